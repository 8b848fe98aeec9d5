"""The small datasets DIMSE encodes over and over, encoded without pydicom's general writer.

Every DIMSE message has a command set (pynetdicom encodes it twice: once to learn its
group length, once to send it), every C-FIND match an identifier, and every C-STORE
received a file meta header. pydicom's ``write_dataset`` handles every VR, character
set and encoding change, and for a dataset made from scratch first looks for ambiguous
VRs in all of it: about a quarter of the node's CPU per C-FIND match went there.

:func:`encode_plain` writes what those datasets hold (text of ASCII characters, unsigned
and signed integers, OB bytes; little endian, implicit or explicit VR) exactly as pydicom
would, byte for byte (``tests/node/test_dicom_encoding.py`` compares them), and answers
``None`` for anything else: a sequence, a decimal string, a value that is not ASCII (but
for LO, SH and the other free-text VRs given as bytes, written as given), an element not
decoded yet. :func:`install` makes pynetdicom's DIMSE messages and service
classes try it first and fall back on pydicom for those.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from typing import Any

import pynetdicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, PersonName
from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    association,
    dimse_messages,
    dsutils,
    service_class,
)

from pacsnode.node.dicom.outgoing import EncodedInstance

log = logging.getLogger(__name__)

#: the pynetdicom releases whose modules this one knows (they import ``encode`` by name)
SUPPORTED_VERSIONS = ("3.0.",)
#: text VRs written as the characters of their values (joined by backslashes)
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
#: text VRs whose values pydicom also writes as given when they are bytes
_ENCODED_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
#: integer VRs and the struct code of one value, little endian
_INTEGER_VRS = {"US": "H", "UL": "L", "SS": "h", "SL": "l"}
_installed = False
_install_lock = threading.Lock()


def encode_plain(dataset: Dataset, implicit_vr: bool) -> bytes | None:
    """``dataset`` encoded little endian, as pydicom's ``write_dataset`` writes it, or
    ``None`` when it holds something this function does not write (see the module)."""
    parts: list[bytes] = []
    for tag in sorted(dataset.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths: pydicom does not write them either
        element = dataset.get_item(tag)
        if not isinstance(element, DataElement):
            return None  # raw: its bytes may need a character set or VR change
        value = _value_bytes(element)
        if value is None:
            return None
        vr = element.VR
        if implicit_vr:
            parts.append(struct.pack("<HHL", tag.group, tag.element, len(value)))
        elif vr in EXPLICIT_VR_LENGTH_32:
            parts.append(struct.pack("<HH2sHL", tag.group, tag.element, vr.encode(), 0, len(value)))
        elif len(value) <= 0xFFFF:
            parts.append(struct.pack("<HH2sH", tag.group, tag.element, vr.encode(), len(value)))
        else:
            return None  # pydicom writes it as UN, with a warning
        parts.append(value)
    return b"".join(parts)


def _value_bytes(element: DataElement) -> bytes | None:
    """The element's value field, padded to an even length, or ``None``."""
    vr, value = element.VR, element.value
    if value is None or value == "" or (isinstance(value, MultiValue | list) and not value):
        return b""
    if vr in _ENCODED_TEXT_VRS and _all_bytes(value):
        # already in the dataset's character set (the node encodes answers itself)
        encoded = b"\\".join(value) if isinstance(value, MultiValue | list) else value
        return encoded + b" " if len(encoded) % 2 else encoded
    if vr in _TEXT_VRS:
        text = _text(value)
        if text is None:
            return None
        if len(text) % 2:
            text += "\0" if vr == "UI" else " "
        return text.encode("ascii")
    code = _INTEGER_VRS.get(vr)
    if code is not None:
        numbers = list(value) if isinstance(value, MultiValue | list) else [value]
        if not all(type(number) is int for number in numbers):
            return None
        try:
            return struct.pack(f"<{len(numbers)}{code}", *numbers)
        except struct.error:
            return None  # out of range: pydicom's error, not ours to phrase
    if vr == "OB" and type(value) is bytes:
        return value + b"\0" if len(value) % 2 else value
    return None


def _all_bytes(value: Any) -> bool:
    values = value if isinstance(value, MultiValue | list) else [value]
    return all(type(item) is bytes for item in values)


def _text(value: Any) -> str | None:
    """A text value (or several) as one string of ASCII characters, or ``None``."""
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    if not all(isinstance(item, str | PersonName) for item in values):
        return None
    text = "\\".join(str(item) for item in values)
    return text if text.isascii() else None


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The File Meta Information pynetdicom writes before a received C-STORE dataset
    (``Event.encoded_dataset``): same elements, same values, same bytes."""
    meta = Dataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax_uid
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PYNETDICOM_IMPLEMENTATION_VERSION
    elements = encode_plain(meta, implicit_vr=False)
    if elements is None:  # a UID that is not ASCII: pydicom says what is wrong with it
        raise ValueError("the C-STORE request's UIDs cannot be written as file meta")
    group_length = struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(elements))
    return group_length + elements


def received_p10(event: Any) -> bytes:
    """A received C-STORE dataset as a Part 10 file, as ``event.encoded_dataset()`` makes
    it, without building pydicom's file meta dataset to write it."""
    request = event.request
    try:
        meta = file_meta(
            request.AffectedSOPClassUID,
            request.AffectedSOPInstanceUID,
            event.context.transfer_syntax,
        )
    except ValueError:
        return bytes(event.encoded_dataset(include_meta=True))
    return b"".join((b"\0" * 128, b"DICM", meta, request.DataSet.getvalue()))


def _plain_first(pydicom_encode: Callable[..., bytes | None]) -> Callable[..., bytes | None]:
    def encode(
        dataset: Dataset, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
    ) -> bytes | None:
        if is_little_endian and not deflated:
            encoded = encode_plain(dataset, is_implicit_vr)
            if encoded is not None:
                return encoded
        return pydicom_encode(dataset, is_implicit_vr, is_little_endian, deflated)

    return encode


def _stored_first(encode: Callable[..., bytes | None]) -> Callable[..., bytes | None]:
    """``encode``, sending an :class:`EncodedInstance` as stored when it can."""

    def encode_instance(
        dataset: Dataset, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
    ) -> bytes | None:
        if isinstance(dataset, EncodedInstance):
            stored = dataset.encoded(is_implicit_vr, is_little_endian, deflated)
            if stored is not None:
                return stored
            dataset = dataset.decoded()  # another encoding: pydicom converts it
        return encode(dataset, is_implicit_vr, is_little_endian, deflated)

    return encode_instance


def install() -> bool:
    """Make pynetdicom's DIMSE messages and service classes try :func:`encode_plain`
    first, and associations send an :class:`EncodedInstance` as stored (once); False when
    this pynetdicom is not a version this module knows."""
    global _installed
    with _install_lock:
        if _installed:
            return True
        if not pynetdicom.__version__.startswith(SUPPORTED_VERSIONS):
            log.info("pynetdicom %s: pydicom encodes every dataset", pynetdicom.__version__)
            return False
        encode = _plain_first(dsutils.encode)
        dimse_messages.encode = encode  # type: ignore[attr-defined]
        service_class.encode = encode  # type: ignore[attr-defined]
        # what an association sends by C-STORE (and its C-FIND and C-GET identifiers)
        association.encode = _stored_first(encode)  # type: ignore[attr-defined]
        _installed = True
        return True
