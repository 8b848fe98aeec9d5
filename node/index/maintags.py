"""The main DICOM tags kept in the index for each level, read from DICOM JSON metadata.

The per-level sets are Orthanc's, plus the extra study, series and instance
tags pacsnode indexes. Values are Orthanc-style strings: person names as
their alphabetic form, numbers as text, multiple values joined by ``\\``.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword

from pacsnode.node.ids import Level

MAIN_TAGS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs",
    ),
    Level.STUDY: (
        "StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber",
        "StudyInstanceUID", "RequestedProcedureDescription", "InstitutionName",
        "RequestingPhysician", "ReferringPhysicianName",
    ),
    Level.SERIES: (
        "SeriesDate", "SeriesTime", "Modality", "Manufacturer", "StationName",
        "SeriesDescription", "BodyPartExamined", "SequenceName", "ProtocolName",
        "SeriesNumber", "CardiacNumberOfImages", "ImagesInAcquisition",
        "NumberOfTemporalPositions", "NumberOfSlices", "NumberOfTimeSlices",
        "SeriesInstanceUID", "ImageOrientationPatient", "SeriesType", "OperatorsName",
        "PerformedProcedureStepDescription", "AcquisitionDeviceProcessingDescription",
        "ContrastBolusAgent",
    ),
    Level.INSTANCE: (
        "InstanceCreationDate", "InstanceCreationTime", "AcquisitionNumber", "ImageIndex",
        "InstanceNumber", "NumberOfFrames", "TemporalPositionIdentifier", "SOPInstanceUID",
        "ImagePositionPatient", "ImageComments", "ImageOrientationPatient", "SOPClassUID",
    ),
}  # fmt: skip

_JSON_KEYS = {
    keyword: f"{tag_for_keyword(keyword):08X}"
    for keywords in MAIN_TAGS.values()
    for keyword in keywords
}

#: every top-level element the index reads from an instance's metadata: what an instance
#: is acknowledged on before its conversion (``storage/received.py``)
INDEXED_TAGS: frozenset[int] = frozenset(int(key, 16) for key in _JSON_KEYS.values())


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # person name
        return str(value.get("Alphabetic", ""))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def json_value(metadata: dict[str, Any], keyword: str) -> str | None:
    """A tag's value as Orthanc shows it, or ``None`` when the element is absent."""
    key = _JSON_KEYS.get(keyword) or f"{tag_for_keyword(keyword) or 0:08X}"
    element = metadata.get(key)
    if element is None:
        return None
    values = element.get("Value", [])
    return "\\".join(_as_text(value) for value in values)


def main_tags(metadata: dict[str, Any], level: Level) -> dict[str, str]:
    """The level's main tags present in an instance's metadata."""
    tags: dict[str, str] = {}
    for keyword in MAIN_TAGS[level]:
        value = json_value(metadata, keyword)
        if value is not None:
            tags[keyword] = value
    return tags
