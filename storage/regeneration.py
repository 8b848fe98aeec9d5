"""Reading an instance's payloads back and rebuilding it as a Dataset or DICOM P10."""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from pacsnode.storage.archive import InstanceSource
from pacsnode.storage.convert import build_dataset, write_p10
from pacsnode.storage.errors import StorageError
from pacsnode.storage.fidelity import assemble
from pacsnode.storage.inflate import read_entry
from pacsnode.storage.layout import bulk_entry
from pacsnode.storage.multipart import Part, unwrap

log = logging.getLogger(__name__)


def read_part_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Part:
    """A stored part; damage on disk (bad CRC, broken deflate) is a StorageError."""
    try:
        return unwrap(read_entry(archive, info))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        log.error("%s in %s is damaged: %s", info.filename, archive.filename, exc)
        raise StorageError(f"{info.filename} is damaged on disk") from exc


def frame_infos(source: InstanceSource) -> list[zipfile.ZipInfo]:
    frames = [info for info in source.entries if "/frames/" in info.filename]
    return sorted(frames, key=lambda info: int(info.filename.rsplit("/", 1)[1]))


def _readers(
    source: InstanceSource, archive: zipfile.ZipFile
) -> tuple[Callable[[], list[bytes]], Callable[[str], bytes]]:
    """Readers of the instance's frames (all at once) and of one bulk value by key."""

    def frames() -> list[bytes]:
        return [read_part_entry(archive, info).payload for info in frame_infos(source)]

    def bulk(key: str) -> bytes:
        name = bulk_entry(source.study_uid, source.series_uid, source.sop_uid, key)
        for info in source.entries:
            if info.filename == name:
                return read_part_entry(archive, info).payload
        raise StorageError(f"instance {source.sop_uid} lacks bulk data {key}")

    return frames, bulk


def dataset_of(source: InstanceSource) -> Dataset:
    """The instance as a pydicom Dataset with its file meta, payloads read in.

    With its layout kept, the file as it came is parsed: pydicom keeps its elements raw
    and writes them back as they are, so a sender (C-GET, C-MOVE) encodes it for the
    cost of a copy. Building it from the DICOM JSON instead converts every value twice
    (half the CPU of a C-GET sub-operation of a CT slice)."""
    layout = source.p10_layout()
    with source.opened() as archive:
        try:
            if layout is not None:
                return pydicom.dcmread(io.BytesIO(assemble(layout, *_readers(source, archive))))
            return build_dataset(source.metadata, *_readers(source, archive))
        except (ValueError, TypeError, KeyError, NotImplementedError, EOFError) as exc:
            raise StorageError(f"instance {source.sop_uid} cannot be rebuilt: {exc}") from exc


def p10_of(source: InstanceSource) -> bytes:
    """The instance's file: as it came when its layout is kept, else regenerated."""
    layout = source.p10_layout()
    if layout is not None:
        with source.opened() as archive:
            return assemble(layout, *_readers(source, archive))
    with source.opened() as archive:
        try:
            dataset = build_dataset(source.metadata, *_readers(source, archive))
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise StorageError(f"instance {source.sop_uid} cannot be rebuilt: {exc}") from exc
    buffer = io.BytesIO()
    try:
        write_p10(dataset, buffer)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise StorageError(f"instance {source.sop_uid} cannot be written as P10: {exc}") from exc
    return buffer.getvalue()


def metadata_as_sent(source: InstanceSource) -> dict[str, Any]:
    """The instance's metadata with some values as the file wrote them, read from its
    kept layout (the stored metadata when there is none): DS and IS as text (``"0001"``,
    not ``1``), person names whole (``"Wang^XiaoDong=王^小东="``; DICOM JSON has no way to
    keep an empty component group).

    DICOM JSON holds numbers and name groups, which is what DICOMweb clients want;
    Orthanc's tag views show the text, so they ask for this.
    """
    layout = source.p10_layout()
    if layout is None:
        return source.metadata
    end = layout.pixel_data_offset or layout.size
    with source.opened() as archive:
        head = assemble(layout, *_readers(source, archive), end=end)
    try:
        dataset = pydicom.dcmread(io.BytesIO(head), force=True, stop_before_pixels=True)
        return _with_texts(source.metadata, dataset, _encodings(dataset, None))
    except Exception:  # what pydicom raises for a file it read once is not worth failing on
        return source.metadata


_NUMBER_STRINGS = ("DS", "IS")
_PN_DELIMITERS = {0x5E, 0x3D}  # ^ and =: where ISO 2022 switches back to the default set


def _encodings(dataset: Dataset, inherited: list[str] | None) -> list[str] | None:
    """The character sets names are read in; ``None`` without Specific Character Set,
    where the node's default encoding decided and the stored names stay as they are."""
    if "SpecificCharacterSet" not in dataset:
        return inherited
    return convert_encodings(dataset.SpecificCharacterSet)


def _with_texts(
    metadata: dict[str, Any], dataset: Dataset, encodings: list[str] | None
) -> dict[str, Any]:
    shown = dict(metadata)
    for tag in dataset.keys():
        key = f"{int(tag):08X}"
        element = shown.get(key)
        if not isinstance(element, dict) or not element.get("Value"):
            continue
        raw = dataset.get_item(tag)
        vr = element.get("vr")
        as_sent = vr in _NUMBER_STRINGS or (vr == "PN" and encodings is not None)
        if as_sent and isinstance(raw, RawDataElement):
            texts = _texts(raw.value or b"", encodings if vr == "PN" else None)
            if len(texts) == len(element["Value"]):
                shown[key] = {**element, "Value": texts}
        elif vr == "SQ":
            items = dataset[tag].value
            if len(items) == len(element["Value"]):
                pairs = zip(element["Value"], items, strict=True)
                shown[key] = {
                    **element,
                    "Value": [_with_texts(j, d, _encodings(d, encodings)) for j, d in pairs],
                }
    return shown


def _texts(value: bytes, encodings: list[str] | None) -> list[str]:
    text = decode_bytes(value, encodings or ["iso8859"], _PN_DELIMITERS)
    return [part.strip(" \0") for part in text.split("\\")]
