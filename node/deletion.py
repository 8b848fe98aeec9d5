"""Deleting resources: storage first, then the index, with a durable note in between.

The study ZIPs are the truth. Before the store is touched, the studies
concerned are marked dirty in the index; the index entries, the ``Deleted``
changes and the clearing of the mark then go in one transaction. A crash in
between leaves a dirty mark that start-up reconciliation resolves.
"""

from __future__ import annotations

import logging

from pacsnode.node import changes
from pacsnode.node.errors import UnknownResource
from pacsnode.node.hierarchy import Removed, instances_under, remove_resource
from pacsnode.node.index import Index, Txn, now_string
from pacsnode.node.writer import IndexWriter
from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)


def log_removal(txn: Txn, removed: Removed, reason: str) -> None:
    now = now_string()
    for level, resource_id, uids in removed.resources:
        changes.append(
            txn, changes.ChangeType.DELETED, level, resource_id, now, Uids=uids, Reason=reason
        )


class Deleter:
    def __init__(
        self, store: StudyStore, attachments: AttachmentStore, index: Index, writer: IndexWriter
    ) -> None:
        self._store = store
        self._attachments = attachments
        self._index = index
        self._writer = writer

    def delete(self, resource_id: str, reason: str = "Request") -> Removed:
        """Delete a resource (and ancestors it leaves empty) from storage and index."""

        def plan(txn: Txn) -> dict[str, set[str]] | None:
            if txn.resource(resource_id) is None:
                return None
            by_study: dict[str, set[str]] = {}
            for record in instances_under(txn, resource_id):
                by_study.setdefault(record["study_uid"], set()).add(record["sop_uid"])
            return by_study

        by_study = self._index.read(plan)
        if by_study is None:
            raise UnknownResource(f"no resource {resource_id}")
        self._writer.run(lambda txn: [txn.mark_dirty(study) for study in by_study])
        for study_uid, sop_uids in by_study.items():
            self._store.delete_instances(study_uid, sop_uids)

        def unindex(txn: Txn) -> Removed:
            removed = remove_resource(txn, resource_id)
            log_removal(txn, removed, reason)
            for study_uid in by_study:
                txn.clear_dirty(study_uid)
            return removed

        removed = self._writer.run(unindex)
        for blob_id in removed.attachment_ids:
            self._attachments.delete(blob_id)
        return removed
