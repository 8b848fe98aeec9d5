"""Resource levels and Orthanc-compatible resource ids.

An id is the SHA-1 of the identifying UIDs joined by ``|`` (PatientID for a
patient; PatientID|StudyInstanceUID for a study; and so on down), written as
five groups of eight hex digits, exactly as Orthanc computes it, so pacsnode
and Orthanc give the same data the same ids.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum


class Level(StrEnum):
    PATIENT = "Patient"
    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"

    @property
    def depth(self) -> int:
        return _ORDER.index(self)

    @property
    def child(self) -> Level | None:
        return _ORDER[self.depth + 1] if self.depth + 1 < len(_ORDER) else None

    @property
    def parent(self) -> Level | None:
        return _ORDER[self.depth - 1] if self.depth > 0 else None

    @property
    def plural(self) -> str:
        """The REST collection name: patients, studies, series, instances."""
        return _PLURALS[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        """Accept ``Study``, ``study``, ``studies``…; raise ValueError otherwise."""
        lowered = text.strip().lower()
        for level in cls:
            if lowered in (level.value.lower(), level.plural):
                return level
        raise ValueError(f"unknown level {text!r}")


_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE]
_PLURALS = {
    Level.PATIENT: "patients",
    Level.STUDY: "studies",
    Level.SERIES: "series",
    Level.INSTANCE: "instances",
}


def format_sha1(text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def resource_ids(
    patient_id: str, study_uid: str, series_uid: str, sop_uid: str
) -> dict[Level, str]:
    """The ids of an instance and of each of its ancestors."""
    return {
        Level.PATIENT: format_sha1(patient_id),
        Level.STUDY: format_sha1(f"{patient_id}|{study_uid}"),
        Level.SERIES: format_sha1(f"{patient_id}|{study_uid}|{series_uid}"),
        Level.INSTANCE: format_sha1(f"{patient_id}|{study_uid}|{series_uid}|{sop_uid}"),
    }


def is_resource_id(text: str) -> bool:
    parts = text.split("-")
    return len(parts) == 5 and all(
        len(part) == 8 and all(c in "0123456789abcdef" for c in part) for part in parts
    )
