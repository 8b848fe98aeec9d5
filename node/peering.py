"""The node's side of the peering interface (``peer.interface.NodeForPeers``)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pacsnode.node import peer_annotations
from pacsnode.node.changes import ChangeType
from pacsnode.node.core import NodeCore
from pacsnode.node.hierarchy import Origin
from pacsnode.node.ids import Level
from pacsnode.node.index import Txn
from pacsnode.node.ingest import IngestStatus, index_instance, instance_ids
from pacsnode.node.writer import IndexWriter
from pacsnode.peer.interface import (
    ChangeBatch,
    Deletion,
    DeletionBatch,
    MergeSummary,
    StudyChange,
)
from pacsnode.storage.errors import NotFound
from pacsnode.storage.layout import is_valid_uid

MIRRORED_REASON = "Peer"
# A user's deletion, or one mirrored from a peer (so it goes on along a chain of sites);
# never recycling or reconciliation.
_MIRRORED_REASONS = {"Request", MIRRORED_REASON}
_STUDY_CHANGES = {
    ChangeType.NEW_INSTANCE.value,
    ChangeType.STABLE_STUDY.value,
    ChangeType.UPDATED_METADATA.value,
    ChangeType.UPDATED_ATTACHMENT.value,
    ChangeType.NEW_PROTECTION.value,
}


def _studies_of(txn: Txn, resource_id: str) -> list[str]:
    """The Study Instance UIDs a change of this resource concerns (none if it is gone)."""
    record = txn.resource(resource_id)
    if record is None:
        return []
    level = Level(record["level"])
    if level is Level.PATIENT:
        studies = (txn.resource(child) for child in txn.children(resource_id))
        return [s["tags"]["StudyInstanceUID"] for s in studies if s is not None]
    if level is Level.SERIES:
        record = txn.resource(record["parent"]) or record
    uid = record.get("study_uid") or record["tags"].get("StudyInstanceUID")
    return [uid] if uid else []


def _study_uid_of(path: Path) -> str | None:
    """The study a ZIP claims to hold (validated properly by the merge itself)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    parts = names[0].split("/") if names else []
    return parts[1] if len(parts) > 1 and is_valid_uid(parts[1]) else None


class NodePeering:
    def __init__(self, core: NodeCore) -> None:
        self._core = core

    @property
    def _writer(self) -> IndexWriter:
        return self._core.writer

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        page = self._core.changes(since, limit)
        found: list[StudyChange] = []
        seen: set[str] = set()
        for change in page.changes:
            if change["ChangeType"] not in _STUDY_CHANGES:
                continue
            for uid in self._core.read(lambda txn, rid=change["ID"]: _studies_of(txn, rid)):
                if uid in seen:
                    continue
                seen.add(uid)
                if query and not self._matches(uid, query):
                    continue
                found.append(StudyChange(change["Seq"], uid))
        return ChangeBatch(found, page.last, page.done)

    def _matches(self, study_uid: str, query: dict[str, str]) -> bool:
        # At series level a query sees series tags (Modality) and study and patient tags.
        found = self._core.find(Level.SERIES, {**query, "StudyInstanceUID": study_uid}, limit=1)
        return bool(found)

    def inventory(self, study_uid: str) -> dict[str, str]:
        try:
            return self._core.store.inventory(study_uid)
        except NotFound:
            return {}

    def write_study(self, study_uid: str, sop_uids: set[str] | None, handle: BinaryIO) -> int:
        return self._core.store.write_study_subset(study_uid, sop_uids, handle)

    def open_study_zip(self, study_uid: str, sop_uids: set[str] | None) -> BinaryIO:
        return self._core.store.open_study_zip(study_uid, sop_uids)

    def merge_study(self, path: Path, peer_name: str) -> MergeSummary:
        # Storage is written before the index: a dirty mark lets start-up
        # reconciliation index what a crash in between would leave unindexed.
        study_uid = _study_uid_of(path)
        if study_uid is not None:
            self._writer.run(lambda txn: txn.mark_dirty(study_uid))
        try:
            self._core.ingestor.check_room(path.stat().st_size)
            result = self._core.store.merge_study_zip(path)
            origin = Origin(kind="Peer", peer=peer_name)

            def index(txn: Txn) -> None:
                for instance in result.added:
                    index_instance(txn, instance, origin)
                txn.clear_dirty(result.study_uid)

            self._writer.run(index)
        finally:
            if study_uid is not None:
                self._writer.run(lambda txn: txn.clear_dirty(study_uid))
        if result.added:
            keep = {instance_ids(instance)[Level.PATIENT] for instance in result.added}
            self._core.ingestor.enforce_limits(keep)
        return MergeSummary(
            result.study_uid,
            [i.sop_uid for i in result.added],
            result.already_stored,
            result.conflicts,
        )

    def annotations(self, study_uid: str) -> dict[str, Any]:
        return peer_annotations.collect(self._core, study_uid)

    def apply_annotations(self, document: dict[str, Any]) -> int:
        return peer_annotations.apply(self._core, document)

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        page = self._core.changes(since, limit)
        found = [
            Deletion(change["Seq"], change["ID"], change["ResourceType"])
            for change in page.changes
            if change["ChangeType"] == ChangeType.DELETED.value
            and change.get("Reason") in _MIRRORED_REASONS
        ]
        return DeletionBatch(found, page.last, page.done)

    def mirror_deletions(self, resource_ids: list[str], peer_name: str) -> int:
        deleted = 0
        for resource_id in resource_ids:
            if self._core.read(lambda txn, rid=resource_id: txn.resource(rid)) is None:
                continue
            self._core.deleter.delete(resource_id, MIRRORED_REASON)
            deleted += 1
        return deleted

    def instance_files(self, study_uid: str, sop_uids: set[str]) -> Iterator[tuple[str, bytes]]:
        series_of = {i.sop_uid: i.series_uid for i in self._core.store.instances(study_uid)}
        for sop_uid in sorted(sop_uids & series_of.keys()):
            yield sop_uid, self._core.store.instance_p10(study_uid, series_of[sop_uid], sop_uid)

    def store_p10(self, data: bytes, peer_name: str) -> bool:
        result = self._core.ingest(data, Origin(kind="Peer", peer=peer_name))
        return result.status is IngestStatus.SUCCESS

    def load_cursor(self, name: str) -> int:
        return self._core.read(lambda txn: txn.counter(f"peer_cursor:{name}"))

    def save_cursor(self, name: str, value: int) -> None:
        self._writer.run(lambda txn: txn.set_global(f"peer_cursor:{name}", str(value)))
