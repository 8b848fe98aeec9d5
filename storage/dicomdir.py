"""The DICOMDIR of a DICOM media file-set (PS3.10 section 8, PS3.3 annex F).

The caller names each file (``IMAGES/IM0``, ...) and hands its header; :class:`DicomDir`
groups the files into PATIENT / STUDY / SERIES / leaf records and encodes the directory,
linking the records by byte offsets.

Why not ``pydicom.fileset.FileSet``: its ``write()`` renames every file to its own scheme
(``PT000000/ST000000/SE000000/IM000000``, no option to keep the caller's), so Orthanc's
``IMAGES/IMn`` layout, which Orthanc users unpack and the compatibility suite checks, cannot
come out of it; it also needs each instance staged as a file on disk and copies it, where the
node streams the media ZIP; and it refuses an instance whose Type 1 keys are missing (no
Patient ID), which a media export of what the node holds must still carry; and its SR records
copy the whole content tree. pydicom still encodes every element here.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

_NEXT = "OffsetOfTheNextDirectoryRecord"
_LOWER = "OffsetOfReferencedLowerLevelDirectoryEntity"
_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
_RECORD_SEQUENCE = 0x00041220
_UNDEFINED_LENGTH = 0xFFFFFFFF
_UTF8 = "ISO_IR 192"
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})

# The keys of each record type (PS3.3 F.5; sequences other than the concept name left out).
# ``?extended`` adds Type 3 attributes of the IODs that a media browser lists and the keys
# lack: the series' description, and an image's frame count and comments. Few on purpose:
# dciodvfy reports each one as outside the standard records.
_KEYS = {
    "PATIENT": ("PatientName", "PatientID"),
    "STUDY": (
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "StudyInstanceUID",
        "StudyID",
        "AccessionNumber",
    ),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
    "IMAGE": ("InstanceNumber",),
    "SR DOCUMENT": (
        "InstanceNumber",
        "CompletionFlag",
        "VerificationFlag",
        "ContentDate",
        "ContentTime",
        "ConceptNameCodeSequence",
    ),
    "KEY OBJECT DOC": ("InstanceNumber", "ContentDate", "ContentTime", "ConceptNameCodeSequence"),
    "PRESENTATION": (
        "InstanceNumber",
        "PresentationCreationDate",
        "PresentationCreationTime",
        "ContentLabel",
        "ContentDescription",
        "ContentCreatorName",
    ),
    "RT DOSE": ("InstanceNumber", "DoseSummationType"),
    "RT STRUCTURE SET": (
        "InstanceNumber",
        "StructureSetLabel",
        "StructureSetDate",
        "StructureSetTime",
    ),
    "RT PLAN": ("InstanceNumber", "RTPlanLabel", "RTPlanDate", "RTPlanTime"),
    "RT TREAT RECORD": ("InstanceNumber", "TreatmentDate", "TreatmentTime"),
    "ENCAP DOC": (
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
        "DocumentTitle",
        "ConceptNameCodeSequence",
        "MIMETypeOfEncapsulatedDocument",
    ),
    "WAVEFORM": ("InstanceNumber", "ContentDate", "ContentTime"),
    "RAW DATA": ("InstanceNumber", "ContentDate", "ContentTime"),
    "SPECTROSCOPY": (
        "ImageType",
        "ContentDate",
        "ContentTime",
        "InstanceNumber",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "DataPointRows",
        "DataPointColumns",
    ),
    "REGISTRATION": (
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
        "ContentLabel",
        "ContentDescription",
        "ContentCreatorName",
    ),
}
_KEYS["FIDUCIAL"] = _KEYS["REGISTRATION"]
# Present when the instance has them (Type 1C / 3 keys of the records above).
_OPTIONAL_KEYS = {
    "SR DOCUMENT": ("VerificationDateTime",),
    "PRESENTATION": ("ReferencedSeriesSequence",),
    "ENCAP DOC": ("HL7InstanceIdentifier",),
}
_EXTENDED_KEYS = {
    "PATIENT": (),
    "STUDY": (),
    "SERIES": ("SeriesDescription",),
    "IMAGE": ("NumberOfFrames", "ImageComments"),
}

# Leaf record types by SOP Class UID (PS3.3 F.5 and PS3.4 annex B); anything else is an IMAGE.
_LEAF_BY_CLASS = {
    "1.2.840.10008.5.1.4.1.1.88.59": "KEY OBJECT DOC",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT DOSE",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT STRUCTURE SET",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT PLAN",
    "1.2.840.10008.5.1.4.1.1.481.4": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.481.6": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.481.7": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.4.2": "SPECTROSCOPY",
    "1.2.840.10008.5.1.4.1.1.66": "RAW DATA",
    "1.2.840.10008.5.1.4.1.1.66.1": "REGISTRATION",
    "1.2.840.10008.5.1.4.1.1.66.2": "FIDUCIAL",
    "1.2.840.10008.5.1.4.1.1.66.3": "REGISTRATION",
}
_LEAF_BY_CLASS_PREFIX = (
    ("1.2.840.10008.5.1.4.1.1.88.", "SR DOCUMENT"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PRESENTATION"),
    ("1.2.840.10008.5.1.4.1.1.104.", "ENCAP DOC"),
    ("1.2.840.10008.5.1.4.1.1.9.", "WAVEFORM"),
)


def leaf_record_type(sop_class_uid: str) -> str:
    """The directory record type of an instance of this SOP class."""
    if sop_class_uid in _LEAF_BY_CLASS:
        return _LEAF_BY_CLASS[sop_class_uid]
    for prefix, record_type in _LEAF_BY_CLASS_PREFIX:
        if sop_class_uid.startswith(prefix):
            return record_type
    return "IMAGE"


@dataclass
class _Node:
    record: Dataset
    children: dict[str, _Node] = field(default_factory=dict)
    offset: int = 0


def _copy_keys(record: Dataset, header: Dataset, keywords: Sequence[str], empty: bool) -> None:
    """Copy these attributes; with ``empty``, an absent one is written empty (Type 2)."""
    for keyword in keywords:
        if keyword in header:
            element = copy.deepcopy(header[keyword])
            record[element.tag] = element
        elif empty:
            setattr(record, keyword, None)


def _record(record_type: str, header: Dataset, extended: bool) -> Dataset:
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = record_type
    if "SpecificCharacterSet" in header:  # the record's text is in the instance's encoding
        record.SpecificCharacterSet = header.SpecificCharacterSet
    # A missing Type 1 key is written empty too: the file is on the media all the same.
    _copy_keys(record, header, _KEYS[record_type], empty=True)
    _copy_keys(record, header, _OPTIONAL_KEYS.get(record_type, ()), empty=False)
    if extended:
        _copy_keys(record, header, _EXTENDED_KEYS.get(record_type, ()), empty=False)
    return record


def _leaf(header: Dataset, file_id: Sequence[str], extended: bool) -> Dataset:
    record = _record(leaf_record_type(str(header.get("SOPClassUID", ""))), header, extended)
    record.ReferencedFileID = list(file_id) if len(file_id) > 1 else file_id[0]
    record.ReferencedSOPClassUIDInFile = header.get("SOPClassUID", "")
    record.ReferencedSOPInstanceUIDInFile = header.get("SOPInstanceUID", "")
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    if syntax:
        record.ReferencedTransferSyntaxUIDInFile = syntax
    return record


class DicomDir:
    """The directory of a file-set, built one file at a time."""

    def __init__(self, extended: bool = False, file_set_id: str = "") -> None:
        self._extended = extended
        self._file_set_id = file_set_id
        self._root = _Node(Dataset())
        self._uid = generate_uid()

    def add(self, file_id: Sequence[str], header: Dataset) -> None:
        """Add a file: its ID components (``("IMAGES", "IM0")``) and its dataset (no pixels
        needed)."""
        node = self._root
        for level, key in (
            ("PATIENT", str(header.get("PatientID", ""))),
            ("STUDY", str(header.get("StudyInstanceUID", ""))),
            ("SERIES", str(header.get("SeriesInstanceUID", ""))),
        ):
            if key not in node.children:
                node.children[key] = _Node(_record(level, header, self._extended))
            node = node.children[key]
        leaf_key = f"{len(node.children)}:{header.get('SOPInstanceUID', '')}"
        node.children[leaf_key] = _Node(_leaf(header, file_id, self._extended))

    def encode(self) -> bytes:
        """The DICOMDIR file (Explicit VR Little Endian, as PS3.10 requires)."""
        ordered = _preorder(self._root)
        # Records may come in different character sets, and the directory has one top level:
        # readers such as dcm2xml decode the whole file with its Specific Character Set. When
        # any text is beyond ASCII, every record goes to UTF-8 and the top level says so.
        utf8 = any(_has_non_ascii(node.record) for node in ordered)
        if utf8:
            for node in ordered:
                _decode_all(node.record)
                node.record.SpecificCharacterSet = _UTF8
        items = [_encoded_item(node.record) for node in ordered]
        # Offsets are fixed-size values: the header's length does not depend on them, nor
        # does any record's, so every record's position is known before the offsets are set.
        position = len(self._header(0, 0)) + 12  # the sequence's tag, VR, reserved, length
        for node, item in zip(ordered, items, strict=True):
            node.offset = position
            position += len(item)
        _link(self._root)
        roots = list(self._root.children.values())
        first, last = (roots[0].offset, roots[-1].offset) if roots else (0, 0)
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        out.write(self._header(first, last))
        out.write_tag(_RECORD_SEQUENCE)
        out.write(b"SQ\x00\x00")
        out.write_UL(_UNDEFINED_LENGTH)
        for node in ordered:
            if out.tell() != node.offset:  # a wrong offset would make a broken directory
                raise AssertionError(f"record at {out.tell()}, offset says {node.offset}")
            out.write(_encoded_item(node.record))
        out.write_tag(_SEQUENCE_DELIMITER)
        out.write_UL(0)
        if utf8:  # (0008,0005) follows the records: elements go in ascending tag order
            top = Dataset()
            top.SpecificCharacterSet = _UTF8
            write_dataset(out, top)
        return out.getvalue()

    def _header(self, first: int, last: int) -> bytes:
        """Preamble, file meta and the directory's elements before its records."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
        meta.MediaStorageSOPInstanceUID = self._uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        dataset = Dataset()
        dataset.FileSetID = self._file_set_id or None
        dataset.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
        dataset.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = last
        dataset.FileSetConsistencyFlag = 0
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        out.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(out, meta, enforce_standard=True)
        write_dataset(out, dataset)
        return out.getvalue()


def _has_non_ascii(dataset: Dataset) -> bool:
    for element in dataset:
        if element.VR == "SQ":
            if any(_has_non_ascii(item) for item in element.value):
                return True
        elif element.VR in _TEXT_VRS and not str(element.value).isascii():
            return True
    return False


def _decode_all(dataset: Dataset) -> None:
    """Turn every value into text in its own character set before the set changes."""
    for element in dataset:  # iterating converts raw elements, decoding their text
        if element.VR == "SQ":
            for item in element.value:
                _decode_all(item)


def _preorder(node: _Node) -> list[_Node]:
    """Each record before the records below it, as readers walk a directory."""
    out: list[_Node] = []
    for child in node.children.values():
        out.append(child)
        out.extend(_preorder(child))
    return out


def _link(node: _Node) -> None:
    """Each record points to its next sibling and to its first child (0: none)."""
    children = list(node.children.values())
    for child, following in zip(children, [*children[1:], None], strict=False):
        child.record[_NEXT].value = following.offset if following else 0
        grandchildren = list(child.children.values())
        child.record[_LOWER].value = grandchildren[0].offset if grandchildren else 0
        _link(child)


def _encoded_item(record: Dataset) -> bytes:
    """One record as a sequence item of defined length."""
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, record)
    content = body.getvalue()
    item = DicomBytesIO()
    item.is_little_endian, item.is_implicit_VR = True, False
    item.write_tag(_ITEM)
    item.write_UL(len(content))
    item.write(content)
    return item.getvalue()


def read_header(data: bytes) -> Dataset:
    """A P10 file's dataset without its pixel data (what a record is made of)."""
    return dcmread(io.BytesIO(data), stop_before_pixels=True)
