"""DICOM P10 <-> archive-direct instance: metadata JSON, frames and bulk data.

pydicom does the DICOM work (parsing, the DICOM JSON model, encapsulation);
this module decides what goes where, as the design note fixes it: Pixel Data
becomes frames in their own transfer syntax, other large binary values become
bulk data, the rest stays in the metadata object with relative BulkDataURIs.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.filewriter import correct_ambiguous_vr, dcmwrite
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from pacsnode.storage import dicom_json
from pacsnode.storage.errors import InvalidDicom, MissingUid, NotDicom
from pacsnode.storage.fidelity import Layout
from pacsnode.storage.layout import check_uid, instance_path

PIXEL_DATA = 0x7FE00010
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
AVAILABLE_TRANSFER_SYNTAX = 0x00083002
AVAILABLE_TRANSFER_SYNTAX_KEY = "00083002"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# pydicom's own root; pacsnode has no registered one. "2.25" + a fixed UUID.
IMPLEMENTATION_CLASS_UID = "2.25.223874215392108765823957304659283748101"
IMPLEMENTATION_VERSION_NAME = "PACSNODE_1"

# Binary values over ~1 KiB are kept as bulk data; pydicom measures its threshold
# in base64 characters.
BULK_THRESHOLD_BASE64 = 1368
_FOUR_GIB = 1 << 32
_VIDEO_PREFIX = "1.2.840.10008.1.2.4.10"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ELEMENT_HEADER_MIN = 8


@dataclass
class SplitInstance:
    """One instance taken apart: metadata object, frame payloads, bulk payloads."""

    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax: str
    metadata: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)
    bulk: dict[str, bytes] = field(default_factory=dict)
    #: the original file's layout (:mod:`storage.fidelity`), when it was kept
    p10_layout: Layout | None = None

    @property
    def ids(self) -> tuple[str, str, str]:
        return self.study_uid, self.series_uid, self.sop_uid

    @property
    def encapsulated(self) -> bool:
        return is_encapsulated(self.transfer_syntax)


def is_encapsulated(transfer_syntax: str) -> bool:
    uid = UID(transfer_syntax)
    return uid.is_transfer_syntax and uid.is_encapsulated


# --- reading P10 -------------------------------------------------------------------


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A file without preamble that starts with a group 0002 or 0008 tag."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def read_p10(source: bytes | Path | BinaryIO) -> Dataset:
    """Parse a DICOM file; anything pydicom cannot read becomes :class:`InvalidDicom`."""
    return read_p10_located(source)[0]


def read_p10_located(source: bytes | Path | BinaryIO) -> tuple[Dataset, int | None]:
    """:func:`read_p10`, and where the top-level Pixel Data element starts in the file
    (``None`` without Pixel Data or without a preamble, as Orthanc reports it)."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return read_p10_located(handle)
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    start = handle.tell()
    head = handle.read(132)
    handle.seek(start)
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_raw_dataset(head):
        raise NotDicom("not a DICOM file: no 'DICM' prefix and no DICOM data set found")
    end = handle.seek(0, io.SEEK_END)
    handle.seek(start)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = pydicom.dcmread(handle, force=not has_preamble)
        _check_complete(dataset, caught, end)
        pixel_data_offset = _pixel_data_offset(dataset, start) if has_preamble else None
        # Values are decoded lazily; decode every element now so that a damaged
        # file fails here, not half-way through storing it.
        dicom_json.decode_all(dataset, BULK_THRESHOLD_BASE64)
    except InvalidDicom:
        raise
    except Exception as exc:  # pydicom raises many types for damaged input
        raise InvalidDicom(f"cannot parse DICOM: {exc}") from exc
    return dataset, pixel_data_offset


def _pixel_data_offset(dataset: Dataset, start: int) -> int | None:
    """Offset of the Pixel Data tag; read before any element is decoded, while the
    raw element still knows where its value lies."""
    raw = dataset.get_item(PIXEL_DATA) if PIXEL_DATA in dataset else None
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        return None
    header = 8 if raw.is_implicit_VR else 12
    return raw.value_tell - header - start


def _check_complete(dataset: Dataset, caught: list[warnings.WarningMessage], file_end: int) -> None:
    """Refuse a truncated file: pydicom keeps short values and stops at a short header."""
    for warning in caught:
        if "End of file" in str(warning.message):
            raise InvalidDicom("the file is truncated: a delimiter is missing")
    last_end = 0
    for tag in dataset.keys():
        raw = dataset.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.value_tell is None:
            continue
        if raw.length == _UNDEFINED_LENGTH or not isinstance(raw.value, bytes):
            last_end = file_end  # read up to its delimiter: nothing to compare
            continue
        if len(raw.value) < raw.length:
            raise InvalidDicom(
                f"the file is truncated: element {tag} has {len(raw.value)} of {raw.length} bytes"
            )
        last_end = max(last_end, raw.value_tell + raw.length)
    if last_end and 0 < file_end - last_end < _ELEMENT_HEADER_MIN:
        raise InvalidDicom("the file is truncated inside an element header")


def transfer_syntax_of(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return str(syntax)
    implicit, little = dataset.original_encoding
    if implicit:
        return IMPLICIT_VR_LITTLE_ENDIAN
    return EXPLICIT_VR_LITTLE_ENDIAN if little else EXPLICIT_VR_BIG_ENDIAN


def _required_uid(dataset: Dataset, keyword: str) -> str:
    """The UID without its trailing padding, validated and written back as such."""
    # read from the fast path's entry when it has one: pydicom would convert the element
    value = dicom_json.kept_single_value(dataset, tag_for_keyword(keyword) or 0)
    if value is None:
        value = dataset.get(keyword)
    if value is None or str(value).strip("\0 ") == "":
        raise MissingUid(f"the instance has no {keyword}")
    uid = check_uid(str(value).rstrip("\0 "), keyword)
    if uid != value:  # rewritten only when that changes it, so the entry stays valid
        setattr(dataset, keyword, uid)
    return uid


# --- P10 -> archive ------------------------------------------------------------------


def instance_identity(dataset: Dataset) -> tuple[str, str, str, str]:
    """(study, series, SOP Instance UID, transfer syntax) of a parsed instance, each
    validated (UIDs without their padding, written back so); refused when one is missing
    or malformed, or the transfer syntax is one pydicom does not know."""
    study_uid = _required_uid(dataset, "StudyInstanceUID")
    series_uid = _required_uid(dataset, "SeriesInstanceUID")
    sop_uid = _required_uid(dataset, "SOPInstanceUID")
    _required_uid(dataset, "SOPClassUID")
    syntax = check_uid(transfer_syntax_of(dataset), "TransferSyntaxUID")
    if not UID(syntax).is_transfer_syntax:
        raise InvalidDicom(f"transfer syntax {syntax} is not one pydicom knows")
    return study_uid, series_uid, sop_uid, syntax


def check_pixel_data(dataset: Dataset, transfer_syntax: str) -> None:
    """Refuse empty Pixel Data under a compressed syntax: pydicom cannot write it back,
    so it could never be served."""
    if PIXEL_DATA in dataset and is_encapsulated(transfer_syntax):
        if not dataset[PIXEL_DATA].value:
            raise InvalidDicom("Pixel Data is empty under a compressed transfer syntax")


def split_dataset(dataset: Dataset) -> SplitInstance:
    """Take a parsed instance apart into metadata, frames and bulk data."""
    study_uid, series_uid, sop_uid, syntax = instance_identity(dataset)
    check_pixel_data(dataset, syntax)
    little_endian = syntax != EXPLICIT_VR_BIG_ENDIAN
    try:
        correct_ambiguous_vr(dataset, little_endian)
        split = SplitInstance(study_uid, series_uid, sop_uid, syntax, {})
        base = instance_path(series_uid, sop_uid)
        pixel_element = _take_pixel_data(dataset, split)

        def to_bulk_uri(element: DataElement, key: str) -> str:
            split.bulk[key] = bytes(element.value)
            return f"{base}/bulkdata/{key}"

        metadata = dicom_json.to_json_dict(dataset, BULK_THRESHOLD_BASE64, to_bulk_uri)
    except InvalidDicom:
        raise
    except Exception as exc:
        raise InvalidDicom(f"cannot convert to DICOM JSON: {exc}") from exc
    if pixel_element is not None:
        metadata[f"{PIXEL_DATA:08X}"] = pixel_element
    metadata[AVAILABLE_TRANSFER_SYNTAX_KEY] = {"vr": "UI", "Value": [syntax]}
    split.metadata = dict(sorted(metadata.items()))
    return split


def _take_pixel_data(dataset: Dataset, split: SplitInstance) -> dict[str, Any] | None:
    """Move top-level Pixel Data out of ``dataset`` into frames (or bulk data)."""
    if PIXEL_DATA not in dataset:
        return None
    element = dataset[PIXEL_DATA]
    value = element.value
    dataset.pop(AVAILABLE_TRANSFER_SYNTAX, None)
    if not value:  # (refused under a compressed syntax by check_pixel_data)
        return None
    base = instance_path(split.series_uid, split.sop_uid)
    frames = _frames_of(dataset, element, split.transfer_syntax)
    del dataset[PIXEL_DATA]
    for tag in (EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS):
        dataset.pop(tag, None)
    if frames is None:
        key = f"{PIXEL_DATA:08X}"
        split.bulk[key] = bytes(value)
        return {"vr": element.VR, "BulkDataURI": f"{base}/bulkdata/{key}"}
    split.frames = frames
    return {"vr": element.VR, "BulkDataURI": f"{base}/frames"}


def _number_of_frames(dataset: Dataset) -> int:
    try:
        return max(int(dataset.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _frames_of(dataset: Dataset, element: DataElement, syntax: str) -> list[bytes] | None:
    """Split Pixel Data into frames; ``None`` when it cannot be split reliably."""
    value: bytes = element.value
    count = _number_of_frames(dataset)
    if is_encapsulated(syntax) and element.is_undefined_length:
        if syntax.startswith(_VIDEO_PREFIX):
            count = 1  # a video stream is one object, however many frames it shows
        extended = None
        if EXTENDED_OFFSET_TABLE in dataset and EXTENDED_OFFSET_TABLE_LENGTHS in dataset:
            extended = (
                dataset[EXTENDED_OFFSET_TABLE].value,
                dataset[EXTENDED_OFFSET_TABLE_LENGTHS].value,
            )
        try:
            frames = list(generate_frames(value, number_of_frames=count, extended_offsets=extended))
        except Exception:
            return None
        if len(frames) != count or not all(frames):
            return None  # kept whole as bulk data, so it regenerates exactly
        return frames
    try:
        frame_bits = get_expected_length(dataset, unit="pixels") // count
        frame_bits *= dataset.BitsAllocated
        if dataset.get("PhotometricInterpretation") == "YBR_FULL_422":
            frame_bits = frame_bits * 2 // 3 if dataset.SamplesPerPixel == 3 else frame_bits
    except Exception:
        return None
    if frame_bits <= 0 or frame_bits % 8:
        return None
    frame_length = frame_bits // 8
    if len(value) not in (frame_length * count, frame_length * count + 1):
        return None
    if frame_length % 2 and element.VR == "OW" and syntax == EXPLICIT_VR_BIG_ENDIAN:
        # Big endian OW swaps the bytes of each word: a frame of odd length ends inside
        # a word, its last byte after the padding (or in the next frame). A lone frame is
        # kept whole, padding and all, so it regenerates byte for byte; several cannot
        # be cut apart, and stay whole as bulk data.
        return [bytes(value)] if count == 1 else None
    return [value[i * frame_length : (i + 1) * frame_length] for i in range(count)]


# --- archive -> P10 ------------------------------------------------------------------


FrameReader = Callable[[], list[bytes]]
BulkReader = Callable[[str], bytes]


def transfer_syntax_of_metadata(metadata: dict[str, Any]) -> str:
    try:
        return str(metadata[AVAILABLE_TRANSFER_SYNTAX_KEY]["Value"][0])
    except (KeyError, IndexError, TypeError):
        return EXPLICIT_VR_LITTLE_ENDIAN


def build_dataset(metadata: dict[str, Any], frames: FrameReader, bulk: BulkReader) -> Dataset:
    """Rebuild a dataset (with file meta) from a stored metadata object."""
    dataset = build_body(metadata, frames, bulk)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = dataset.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = transfer_syntax_of_metadata(metadata)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    dataset.file_meta = meta
    return dataset


def build_body(metadata: dict[str, Any], frames: FrameReader, bulk: BulkReader) -> Dataset:
    """The dataset of :func:`build_dataset` without its file meta."""
    syntax = transfer_syntax_of_metadata(metadata)

    extended_tables: list[tuple[bytes, bytes]] = []

    def resolve(uri: str) -> bytes:
        if uri.endswith("/frames"):
            pixel_data, tables = _pixel_data_from_frames(frames(), syntax)
            if tables is not None:
                extended_tables.append(tables)
            return pixel_data
        key = uri.rsplit("/bulkdata/", 1)[-1]
        return bulk(key)

    body = {key: value for key, value in metadata.items() if key != AVAILABLE_TRANSFER_SYNTAX_KEY}
    dataset = Dataset.from_json(body, resolve)
    if PIXEL_DATA in dataset and dataset[PIXEL_DATA].value is None:
        dataset[PIXEL_DATA].value = b""  # empty Pixel Data stays an empty, defined-length value
    if is_encapsulated(syntax) and PIXEL_DATA in dataset and dataset[PIXEL_DATA].value:
        dataset[PIXEL_DATA].is_undefined_length = True
        if extended_tables:
            dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths = extended_tables[0]
    return dataset


def _pixel_data_from_frames(
    frames: list[bytes], syntax: str
) -> tuple[bytes, tuple[bytes, bytes] | None]:
    """Pixel Data from frames, re-encapsulated with a Basic Offset Table when that fits."""
    if not is_encapsulated(syntax):
        return b"".join(frames), None
    if sum(len(frame) + 8 for frame in frames) < _FOUR_GIB:
        return encapsulate(frames, has_bot=True), None
    data, offsets, lengths = encapsulate_extended(frames)
    return data, (offsets, lengths)


def write_p10(dataset: Dataset, handle: BinaryIO) -> None:
    """Write ``dataset`` as a DICOM file with preamble and file meta."""
    dataset.save_as(handle, enforce_file_format=True)


def write_body(dataset: Dataset, transfer_syntax: str, handle: BinaryIO) -> None:
    """Write ``dataset`` alone (no preamble, no file meta) as ``transfer_syntax`` encodes it."""
    syntax = UID(transfer_syntax)
    dcmwrite(
        handle, dataset, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian
    )


def p10_bytes(metadata: dict[str, Any], frames: FrameReader, bulk: BulkReader) -> bytes:
    buffer = io.BytesIO()
    write_p10(build_dataset(metadata, frames, bulk), buffer)
    return buffer.getvalue()
