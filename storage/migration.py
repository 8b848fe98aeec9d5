"""Moving sealed study ZIPs from one storage backend to another (``pacsnode
migrate-storage``), with the node stopped.

A site that outgrows its disk switches ``[storage] backend`` (to ``s3``, say) and then
moves what the old backend holds into the new one, study by study:

- a study the new backend lacks is copied as it is (the ZIP is the same format
  everywhere), then read back and compared byte for byte (SHA-256) before it counts;
- one it already holds with the same bytes is done (a migration cut short is resumed by
  running it again);
- one it holds with other content (the node ran on the new backend before the move and
  sealed new instances there) is merged, union by SOP Instance UID as a peer's ZIP is
  (:meth:`StudyStore.merge_study_zip`); an instance present in both with different
  content is a conflict, kept as the new backend has it, and the old copy stays.

The old backend keeps its copies unless asked to remove them, and only those the new
backend verifiably holds. Staging stays on the local disk whatever the backend, so what
was not sealed yet needs nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import BinaryIO

from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.errors import StorageError
from pacsnode.storage.layout import check_uid
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class Moved(Enum):
    COPIED = "copied"
    ALREADY_THERE = "already there"
    MERGED = "merged"
    CONFLICTS = "merged, with conflicts"


@dataclass
class MigrationReport:
    studies: dict[str, int] = field(default_factory=lambda: {m.value: 0 for m in Moved})
    bytes_copied: int = 0
    removed_from_source: int = 0
    #: study -> SOP Instance UIDs whose content differs between the backends
    conflicts: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            **self.studies,
            "bytes copied": self.bytes_copied,
            "removed from the old backend": self.removed_from_source,
            "conflicts": self.conflicts,
        }


def _sha256(backend: SealedBackend, study_uid: str) -> str | None:
    """The digest of the study's whole ZIP in a backend; None when it has none."""
    digest = hashlib.sha256()
    try:
        blob = backend.get(study_uid)
    except FileNotFoundError:
        return None
    with blob:
        blob.seek(0)
        while chunk := blob.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(source: SealedBackend, target: SealedBackend, study_uid: str) -> tuple[str, int]:
    """Put the source's ZIP into the target as it is: its digest and size."""
    copied = {"digest": "", "size": 0}

    def fill(handle: BinaryIO) -> None:
        digest, size = hashlib.sha256(), 0
        with source.get(study_uid) as blob:
            blob.seek(0)
            while chunk := blob.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
        copied.update(digest=digest.hexdigest(), size=size)

    target.put(study_uid, fill)
    return str(copied["digest"]), int(copied["size"])


def move_study(
    store: StudyStore, source: SealedBackend, study_uid: str, report: MigrationReport
) -> Moved:
    """Bring one study's ZIP from ``source`` into the store's backend (module docstring)."""
    check_uid(study_uid, "study")
    target = store.backend
    held = target.size(study_uid)
    if held is None:
        digest, size = _copy(source, target, study_uid)
        if _sha256(target, study_uid) != digest:
            raise StorageError(
                f"study {study_uid}: the copy in {target.name!r} does not read back as "
                f"written; the study stays in {source.name!r}"
            )
        report.bytes_copied += size
        return Moved.COPIED
    if held == source.size(study_uid) and _sha256(target, study_uid) == _sha256(source, study_uid):
        return Moved.ALREADY_THERE
    with source.get(study_uid) as blob:
        # pending until the next start, whose recovery reconciles the index with it
        merged = store.merge_study_zip(blob, hold_pending=True)
    if merged.conflicts:
        report.conflicts[study_uid] = sorted(merged.conflicts)
        return Moved.CONFLICTS
    return Moved.MERGED


def migrate(
    store: StudyStore,
    source: SealedBackend,
    *,
    remove_source: bool = False,
    progress: Callable[[str, Moved], None] | None = None,
) -> MigrationReport:
    """Move every study ``source`` holds into the store's backend; with ``remove_source``,
    remove from ``source`` each study the store's backend now holds (not one with
    conflicts). A failure (the new backend full or down) stops the migration where it is:
    what was moved stays moved, and running it again goes on from there."""
    report = MigrationReport()
    for study_uid in sorted(source.study_uids()):
        moved = move_study(store, source, study_uid, report)
        report.studies[moved.value] += 1
        if remove_source and moved is not Moved.CONFLICTS:
            source.delete(study_uid)
            report.removed_from_source += 1
        if progress is not None:
            progress(study_uid, moved)
    return report
