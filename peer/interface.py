"""What peering needs from a node, and nothing more. The node implements it.

Implementations should be idempotent: merging the same ZIP twice stores
nothing twice, and a cursor may be saved again with the same value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pacsnode.peer.spool import TransferLimits


@dataclass(frozen=True)
class StudyChange:
    seq: int
    study_uid: str


@dataclass(frozen=True)
class ChangeBatch:
    changes: list[StudyChange]
    last: int
    done: bool


@dataclass
class MergeSummary:
    study_uid: str
    added: list[str] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Deletion:
    seq: int
    resource_id: str  # the same on every node: ids derive from the UIDs
    level: str


@dataclass(frozen=True)
class DeletionBatch:
    deletions: list[Deletion]
    last: int
    done: bool


class NodeForPeers(Protocol):
    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        """Studies that gained instances after cursor ``since`` (deletions are not sent),
        only those matching ``query`` (``/tools/find`` keywords) when one is given."""

    def inventory(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> content digest; empty when the study is not here."""

    def study_matches(self, study_uid: str, query: dict[str, str]) -> bool:
        """Whether the study is here and matches ``query`` (``/tools/find`` keywords, as
        a peer's ``filter``); the listener keeps a filtered peer to matching studies."""

    def write_study(self, study_uid: str, sop_uids: set[str] | None, handle: BinaryIO) -> int:
        """Write the study (or those instances) as an archive-direct ZIP; return the count."""

    def open_study_zip(self, study_uid: str, sop_uids: set[str] | None) -> BinaryIO:
        """The study (or those instances) as an open archive-direct ZIP; the caller closes it."""

    def merge_study(self, path: Path, peer_name: str) -> MergeSummary:
        """Validate and merge a ZIP received from ``peer_name``; raises on a bad ZIP."""

    def annotations(self, study_uid: str) -> dict[str, Any]:
        """User metadata, attachments and protection of the study's resources (JSON)."""

    def apply_annotations(self, document: dict[str, Any], study_uid: str | None = None) -> int:
        """Add the annotations this node lacks; never overwrite. Returns how many.

        With ``study_uid`` (what a peer sends is always about one study), only resources
        of that study and its patient are touched; others are skipped. The document's
        shape is checked first (``peer.annotation_doc``)."""

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        """Deletions asked by a user or mirrored from a peer after cursor ``since``
        (never recycling: recycling on one node must not delete on another)."""

    def studies_of(self, resource_id: str) -> list[str]:
        """The Study Instance UIDs a resource belongs to or holds (a patient: all of
        its studies); empty when it is not here."""

    def mirror_deletions(self, resource_ids: list[str], peer_name: str) -> int:
        """Delete those resources that exist here; return how many were deleted."""

    def instance_files(self, study_uid: str, sop_uids: set[str]) -> Iterator[tuple[str, bytes]]:
        """(SOP Instance UID, DICOM P10) of those instances of the study, one at a time."""

    def store_p10(self, data: bytes, peer_name: str) -> bool:
        """Ingest one DICOM file received from a peer; whether it was new here."""

    def storage_room(self) -> int | None:
        """Bytes the node may still take in under its storage size limit (recycling
        counted as room), or ``None`` without a size limit; the peer spool counts
        against it."""

    def transfer_limits(self) -> TransferLimits:
        """What one peer may hold in the spool (the node's ``[peering]`` settings)."""

    def load_cursor(self, name: str) -> int:
        """A durable replication cursor (0 when never saved)."""

    def save_cursor(self, name: str, value: int) -> None:
        """Save a replication cursor durably."""
