"""What the study store answers: outcomes of puts and merges, instance facts, sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pacsnode.storage.archive import InstanceSource


class PutStatus(Enum):
    STORED = "Success"
    ALREADY_STORED = "AlreadyStored"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class StoredInstance:
    """What the index needs to know about an instance the store holds."""

    study_uid: str
    series_uid: str
    sop_uid: str
    metadata: dict[str, Any]
    digest: str
    #: compressed bytes of its frames and bulk data (the same staged or sealed)
    stored_size: int
    #: bytes of its DICOM file (as it came when its P10 layout is kept)
    uncompressed_size: int
    #: where Pixel Data starts in that file, when known
    pixel_data_offset: int | None = None


@dataclass(frozen=True)
class PreparedInstance:
    """An instance converted and compressed in memory, not yet written."""

    instance: StoredInstance
    staged_bytes: bytes
    source_size: int


@dataclass(frozen=True)
class PutResult:
    status: PutStatus
    instance: StoredInstance
    source_size: int
    #: digest of the copy already stored, when the status is a conflict
    existing_digest: str | None = None


@dataclass
class MergeResult:
    study_uid: str
    added: list[StoredInstance] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StudySize:
    disk_bytes: int
    uncompressed_bytes: int
    instance_count: int
    staged_count: int


def stored_instance(source: InstanceSource) -> StoredInstance:
    return StoredInstance(
        source.study_uid,
        source.series_uid,
        source.sop_uid,
        source.metadata,
        source.digest,
        source.compressed_size,
        source.p10_size,
        source.pixel_data_offset,
    )
