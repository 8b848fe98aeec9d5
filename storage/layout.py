"""Where things live: UID validation and every path the store derives from UIDs.

UIDs become directory and ZIP entry names, so they are validated against the
DICOM UID grammar (PS3.5 9.1) and rejected, never escaped.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pacsnode.storage.errors import InvalidUid

_UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_UID_LENGTH = 64

STUDY_ZIP_NAME = "study.zip"
P10_LAYOUT_NAME = "p10-layout"
STAGING_DIR_NAME = "staging"
STAGED_SUFFIX = ".zip"
#: an instance as it was received, not yet converted into its staging ZIP (storage/received.py)
RECEIVED_SUFFIX = ".dcm"
TEMP_SUFFIX = ".tmp"


def is_valid_uid(value: object) -> bool:
    """Return whether ``value`` is a syntactically valid DICOM UID."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_UID_LENGTH
        and _UID_PATTERN.fullmatch(value) is not None
    )


def check_uid(value: object, what: str) -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`InvalidUid` naming ``what``."""
    if not is_valid_uid(value):
        shown = repr(value)[:80]
        raise InvalidUid(f"{what} {shown} is not a valid DICOM UID")
    assert isinstance(value, str)
    return value


# --- entry names inside a study ZIP (they match WADO-RS URIs) -------------------------


def study_prefix(study_uid: str) -> str:
    return f"studies/{study_uid}/"


def metadata_entry(study_uid: str) -> str:
    return f"studies/{study_uid}/metadata"


def instance_path(series_uid: str, sop_uid: str) -> str:
    """The instance's URI relative to the study (what BulkDataURIs are resolved against)."""
    return f"series/{series_uid}/instances/{sop_uid}"


def instance_prefix(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"studies/{study_uid}/{instance_path(series_uid, sop_uid)}/"


def frame_entry(study_uid: str, series_uid: str, sop_uid: str, number: int) -> str:
    return f"{instance_prefix(study_uid, series_uid, sop_uid)}frames/{number}"


def bulk_entry(study_uid: str, series_uid: str, sop_uid: str, key: str) -> str:
    return f"{instance_prefix(study_uid, series_uid, sop_uid)}bulkdata/{key}"


def p10_layout_entry(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """How the instance's original file was laid out (:mod:`storage.fidelity`); not a
    WADO-RS resource, so no DICOMweb path collides with it."""
    return f"{instance_prefix(study_uid, series_uid, sop_uid)}{P10_LAYOUT_NAME}"


def is_p10_layout_entry(name: str) -> bool:
    return name.endswith(f"/{P10_LAYOUT_NAME}")


def staged_metadata_entry(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The instance's own metadata object inside its staging file (never in a study ZIP)."""
    return f"{instance_prefix(study_uid, series_uid, sop_uid)}metadata"


_BULK_KEY = re.compile(r"[0-9A-F]{8}(\.[0-9]+\.[0-9A-F]{8})*")
_ENTRY = re.compile(
    r"studies/(?P<study>[0-9.]+)/(?:metadata|series/(?P<series>[0-9.]+)/instances/"
    r"(?P<sop>[0-9.]+)/(?:frames/(?P<frame>[1-9][0-9]*)|bulkdata/(?P<bulk>[0-9A-F.]+)"
    r"|(?P<layout>p10-layout)))"
)


class EntryName:
    """A parsed, validated study ZIP entry name."""

    __slots__ = ("bulk_key", "frame", "series_uid", "sop_uid", "study_uid")

    def __init__(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        frame: int | None,
        bulk_key: str | None,
    ) -> None:
        self.study_uid = study_uid
        self.series_uid = series_uid
        self.sop_uid = sop_uid
        self.frame = frame
        self.bulk_key = bulk_key

    @property
    def is_metadata(self) -> bool:
        return self.sop_uid is None


def parse_entry_name(name: str) -> EntryName | None:
    """Parse a study ZIP entry name; ``None`` if it is not one pacsnode writes."""
    match = _ENTRY.fullmatch(name)
    if match is None:
        return None
    uids = [match["study"], match["series"], match["sop"]]
    if not all(uid is None or is_valid_uid(uid) for uid in uids):
        return None
    bulk = match["bulk"]
    if bulk is not None and _BULK_KEY.fullmatch(bulk) is None:
        return None
    frame = int(match["frame"]) if match["frame"] else None
    return EntryName(match["study"], match["series"], match["sop"], frame, bulk)


# --- directories on disk -------------------------------------------------------------


def study_dir(root: Path, study_uid: str) -> Path:
    """``root/studies/{xx}/{S}``: one level of 256 buckets keeps directories small."""
    check_uid(study_uid, "StudyInstanceUID")
    bucket = hashlib.sha1(study_uid.encode("ascii")).hexdigest()[:2]
    return root / "studies" / bucket / study_uid


def study_zip_path(root: Path, study_uid: str) -> Path:
    return study_dir(root, study_uid) / STUDY_ZIP_NAME


def staging_dir(root: Path, study_uid: str) -> Path:
    return study_dir(root, study_uid) / STAGING_DIR_NAME


def staged_instance_path(root: Path, study_uid: str, sop_uid: str) -> Path:
    check_uid(sop_uid, "SOPInstanceUID")
    return staging_dir(root, study_uid) / f"{sop_uid}{STAGED_SUFFIX}"


def received_instance_path(root: Path, study_uid: str, sop_uid: str) -> Path:
    check_uid(sop_uid, "SOPInstanceUID")
    return staging_dir(root, study_uid) / f"{sop_uid}{RECEIVED_SUFFIX}"


def sop_uid_of_staged(path: Path) -> str | None:
    """The SOP Instance UID a staging file name holds, or ``None`` for other files."""
    return _sop_uid_with_suffix(path, STAGED_SUFFIX)


def sop_uid_of_received(path: Path) -> str | None:
    """The SOP Instance UID a received (not yet converted) file's name holds, or ``None``."""
    return _sop_uid_with_suffix(path, RECEIVED_SUFFIX)


def _sop_uid_with_suffix(path: Path, suffix: str) -> str | None:
    name = path.name
    if not name.endswith(suffix):
        return None
    uid = name[: -len(suffix)]
    return uid if is_valid_uid(uid) else None
