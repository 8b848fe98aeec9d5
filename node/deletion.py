"""Deleting resources: storage first, then the index, with a durable note in between.

The study ZIPs are the truth. Before the store is touched, the studies
concerned are marked dirty in the index; the index entries, the ``Deleted``
changes and the clearing of the mark then go in one transaction. A crash in
between leaves a dirty mark that start-up reconciliation resolves.
"""

from __future__ import annotations

import logging

from pacsnode.node.index import DeletionReason, Index, Removed
from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)


class Deleter:
    def __init__(self, store: StudyStore, attachments: AttachmentStore, index: Index) -> None:
        self._store = store
        self._attachments = attachments
        self._index = index

    def delete(self, resource_id: str, reason: DeletionReason = DeletionReason.REQUEST) -> Removed:
        """Delete a resource (and ancestors it leaves empty) from storage and index."""
        by_study: dict[str, set[str]] = {}
        for ref in self._index.instances_of([resource_id]):  # UnknownResource if absent
            by_study.setdefault(ref.study_uid, set()).add(ref.sop_uid)
        self._index.mark_dirty(by_study)
        for study_uid, sop_uids in by_study.items():
            self._store.delete_instances(study_uid, sop_uids)
        removed = self._index.remove(resource_id, reason, clear_dirty=by_study)
        for blob_id in removed.attachment_ids:
            self._attachments.delete(blob_id)
        return removed
