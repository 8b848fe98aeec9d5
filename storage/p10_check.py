"""Whether a received instance's metadata would regenerate as DICOM P10.

Part of validating a study ZIP from a peer (:mod:`storage.received_zip`): the
metadata of every instance must make a valid P10 file, frames and bulk data
aside (those are checked by CRC and part structure).
"""

from __future__ import annotations

import io
import logging
from typing import Any

from pydicom.uid import UID
from pydicom.valuerep import AMBIGUOUS_VR

from pacsnode.storage.archive import SOP_UID_KEY, InstanceSource
from pacsnode.storage.convert import (
    AVAILABLE_TRANSFER_SYNTAX_KEY,
    build_body,
    build_dataset,
    transfer_syntax_of_metadata,
    write_body,
    write_p10,
)
from pacsnode.storage.errors import InvalidArchive
from pacsnode.storage.layout import is_valid_uid

log = logging.getLogger(__name__)
_SPECIFIC_CHARACTER_SET_KEY = "00080005"
_SOP_CLASS_UID_KEY = "00080016"
_PIXEL_DATA_KEY = "7FE00010"
# Text is encoded with the character set, and the transfer syntax decides how
# everything is written: every trial holds both. The file meta is made from the
# SOP UIDs: a trial with it holds them too.
_ENCODING_SOURCES = (_SPECIFIC_CHARACTER_SET_KEY, AVAILABLE_TRANSFER_SYNTAX_KEY)
_FILE_META_SOURCES = (*_ENCODING_SOURCES, _SOP_CLASS_UID_KEY, SOP_UID_KEY)


class P10Check:
    """Whether each instance's metadata makes a valid P10 file (payloads stubbed).

    Building and writing a whole trial file per instance used to be most of
    the cost of a merge, although the instances of a series share nearly all
    their elements. With pydicom 3, whether an element converts from DICOM
    JSON and writes depends only on the element, the transfer syntax and the
    Specific Character Set, except for an ambiguous VR (resolved against Pixel
    Representation, Bits Allocated...) and for two keys naming one tag; the
    file meta depends only on the SOP Class and Instance UIDs and the syntax.
    So what passed once under a syntax and character set is not tried again:
    each instance's trial holds only its elements not seen yet, written with
    the file meta when that is new too, else as a bare data set. An instance
    with an ambiguous VR or a non-canonical key is tried whole.
    """

    def __init__(self) -> None:
        self._passed: set[tuple[str, str, str]] = set()

    def check(self, source: InstanceSource) -> None:
        metadata = source.metadata
        if any(key.startswith("0002") for key in metadata):
            raise InvalidArchive(f"instance {source.sop_uid} carries file meta elements")
        syntax = transfer_syntax_of_metadata(metadata)
        if not is_valid_uid(syntax) or not UID(syntax).is_transfer_syntax:
            raise InvalidArchive(f"instance {source.sop_uid} has an unknown transfer syntax")
        context = repr(
            (metadata.get(AVAILABLE_TRANSFER_SYNTAX_KEY), metadata.get(_SPECIFIC_CHARACTER_SET_KEY))
        )
        trial: dict[str, Any] = {}
        marks: list[tuple[str, str, str]] = []
        for key, element in metadata.items():
            mark = (context, key, _element_mark(source, key, element))
            if mark in self._passed:
                continue
            if key != key.upper() or _has_ambiguous_vr(element):
                _try_regenerating(source, metadata, with_file_meta=True)
                return
            trial[key] = element
            marks.append(mark)
        sop_uids = [
            _element_mark(source, key, metadata[key]) if key in metadata else "absent"
            for key in (_SOP_CLASS_UID_KEY, SOP_UID_KEY)
        ]
        file_meta = (context, "file meta", repr(sop_uids))
        # dcmwrite sets Pixel Data's length from the file meta's transfer syntax.
        with_file_meta = file_meta not in self._passed or _PIXEL_DATA_KEY in trial
        if not marks and not with_file_meta:
            return  # every element has passed under this syntax and character set
        for key in _FILE_META_SOURCES if with_file_meta else _ENCODING_SOURCES:
            if key in metadata:
                trial[key] = metadata[key]
        _try_regenerating(source, trial, with_file_meta=with_file_meta)
        self._passed.update(marks)
        self._passed.add(file_meta)


def _element_mark(source: InstanceSource, key: str, element: dict[str, Any]) -> str:
    """The element as far as a trial can tell: ``repr`` tells apart every two JSON
    values (1 and 1.0, True and 1), while a BulkDataURI counts only as frames or
    bulk data and a plain SOP Instance UID only as being one.
    """
    if key == SOP_UID_KEY and element == {"vr": "UI", "Value": [source.sop_uid]}:
        # Already a valid UID (_instances_from_metadata): any other one writes alike.
        return "a valid SOP Instance UID"
    uri = element.get("BulkDataURI")
    if isinstance(uri, str):
        # The trial's readers see nothing else of it (see _try_regenerating), and
        # _check_bulk_references has checked where it points.
        element = {**element, "BulkDataURI": "/frames" if uri.endswith("/frames") else "/bulk"}
    return repr(element)


def _has_ambiguous_vr(element: dict[str, Any]) -> bool:
    if element.get("vr") in AMBIGUOUS_VR:
        return True
    if element.get("vr") == "SQ":
        for item in element.get("Value") or []:
            if any(_has_ambiguous_vr(child) for child in item.values()):
                return True
    return False


def _try_regenerating(
    source: InstanceSource, metadata: dict[str, Any], *, with_file_meta: bool
) -> None:
    """Build ``metadata`` with every frame and bulk value stubbed, and write it."""
    try:
        if with_file_meta:
            write_p10(build_dataset(metadata, _stub_frames, _stub_bulk), io.BytesIO())
        else:
            dataset = build_body(metadata, _stub_frames, _stub_bulk)
            write_body(dataset, transfer_syntax_of_metadata(metadata), io.BytesIO())
    except Exception as exc:
        log.warning("instance %s does not make a DICOM file: %r", source.sop_uid, exc)
        raise InvalidArchive(f"instance {source.sop_uid} does not make a DICOM file") from exc


def _stub_frames() -> list[bytes]:
    return [b"\0\0"]


def _stub_bulk(key: str) -> bytes:
    return b""
