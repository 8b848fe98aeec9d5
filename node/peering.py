"""The node's side of the peering interface (``peer.interface.NodeForPeers``).

Everything here goes through :class:`NodeCore`'s named methods: a peer's ZIP is
merged by the node's one ingest path, deletions by its one deletion path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pacsnode.node import peer_annotations
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.index import ChangeType, DeletionReason, Origin, OriginKind
from pacsnode.node.ingest import IngestStatus
from pacsnode.node.recycling import StorageMode
from pacsnode.peer.interface import (
    ChangeBatch,
    Deletion,
    DeletionBatch,
    MergeSummary,
    StudyChange,
)
from pacsnode.peer.spool import TransferLimits
from pacsnode.storage.errors import NotFound

_STUDY_CHANGES = {
    ChangeType.NEW_INSTANCE.value,
    ChangeType.STABLE_STUDY.value,
    ChangeType.UPDATED_METADATA.value,
    ChangeType.UPDATED_ATTACHMENT.value,
    ChangeType.NEW_PROTECTION.value,
}


def _mirrored(change: dict[str, Any]) -> bool:
    """A deletion that peers mirroring deletions repeat (see DeletionReason.mirrored)."""
    if change["ChangeType"] != ChangeType.DELETED.value:
        return False
    try:
        return DeletionReason(change.get("Reason")).mirrored
    except ValueError:
        return False


class NodePeering:
    def __init__(self, core: NodeCore, limits: TransferLimits | None = None) -> None:
        self._core = core
        self._limits = limits or TransferLimits()

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        page = self._core.changes(since, limit)
        found: list[StudyChange] = []
        seen: set[str] = set()
        for change in page.changes:
            if change["ChangeType"] not in _STUDY_CHANGES:
                continue
            for uid in self._core.index.studies_of(change["ID"]):
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

    def study_matches(self, study_uid: str, query: dict[str, str]) -> bool:
        return self._matches(study_uid, query)

    def inventory(self, study_uid: str) -> dict[str, str]:
        try:
            return self._core.study_inventory(study_uid)
        except NotFound:
            return {}

    def write_study(self, study_uid: str, sop_uids: set[str] | None, handle: BinaryIO) -> int:
        return self._core.write_study_zip(study_uid, sop_uids, handle)

    def open_study_zip(self, study_uid: str, sop_uids: set[str] | None) -> BinaryIO:
        return self._core.open_study_zip(study_uid, sop_uids)

    def merge_study(self, path: Path, peer_name: str) -> MergeSummary:
        result = self._core.merge_study_zip(path, Origin(kind=OriginKind.PEER, peer=peer_name))
        return MergeSummary(
            result.study_uid,
            [i.sop_uid for i in result.added],
            result.already_stored,
            result.conflicts,
        )

    def annotations(self, study_uid: str) -> dict[str, Any]:
        return peer_annotations.collect(self._core.index, self._core.annotations, study_uid)

    def apply_annotations(self, document: dict[str, Any], study_uid: str | None = None) -> int:
        return peer_annotations.apply(self._core.index, self._core.annotations, document, study_uid)

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        page = self._core.changes(since, limit)
        found = [
            Deletion(change["Seq"], change["ID"], change["ResourceType"])
            for change in page.changes
            if _mirrored(change)
        ]
        return DeletionBatch(found, page.last, page.done)

    def studies_of(self, resource_id: str) -> list[str]:
        return self._core.index.studies_of(resource_id)

    def mirror_deletions(self, resource_ids: list[str], peer_name: str) -> int:
        deleted = 0
        for resource_id in resource_ids:
            if not self._core.exists(resource_id):
                continue
            self._core.delete(resource_id, DeletionReason.PEER)
            deleted += 1
        return deleted

    def instance_files(self, study_uid: str, sop_uids: set[str]) -> Iterator[tuple[str, bytes]]:
        refs = {ref.sop_uid: ref for ref in self._core.stored_instances(study_uid)}
        for sop_uid in sorted(sop_uids & refs.keys()):
            yield sop_uid, self._core.instance_p10(refs[sop_uid])

    def store_p10(self, data: bytes, peer_name: str) -> bool:
        result = self._core.ingest(data, Origin(kind=OriginKind.PEER, peer=peer_name))
        return result.status is IngestStatus.SUCCESS

    def storage_room(self) -> int | None:
        limits = self._core.settings.limits
        if not limits.max_size_bytes:
            return None
        if limits.mode is StorageMode.RECYCLE:
            # Stored studies make way for new ones; the spool must fit beside them.
            return limits.max_size_bytes
        return max(0, limits.max_size_bytes - self._core.index.usage().size_bytes)

    def transfer_limits(self) -> TransferLimits:
        return self._limits

    def load_cursor(self, name: str) -> int:
        return self._core.index.cursor(name)

    def save_cursor(self, name: str, value: int) -> None:
        self._core.index.save_cursor(name, value)
