"""Deleting resources: storage first, then the index, with a durable note in between.

The study ZIPs are the truth. Before the store is touched, the studies
concerned are marked dirty in the index; the index entries, the ``Deleted``
changes and the clearing of the mark then go in one transaction. A crash in
between leaves a dirty mark that start-up reconciliation resolves.

A deletion holds what it deletes exclusively in the store's gate (:mod:`storage.gates`)
from reading which instances to delete to unindexing them, where an ingest holds its
study and patient shared from storing to indexing. So the instances read are all there
is (no ingest of those studies is half done), and what the index then removes is exactly
what was deleted from storage: no instance is left stored but unindexed.
"""

from __future__ import annotations

import logging

from pacsnode.node.errors import UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import DeletionReason, Index, Removed
from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.gates import resource_key, study_key
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)


class Deleter:
    def __init__(self, store: StudyStore, attachments: AttachmentStore, index: Index) -> None:
        self._store = store
        self._attachments = attachments
        self._index = index

    def delete(self, resource_id: str, reason: DeletionReason = DeletionReason.REQUEST) -> Removed:
        """Delete a resource (and ancestors it leaves empty) from storage and index."""
        try:
            return self._delete(resource_id, reason)
        except UnknownResource:
            if reason is not DeletionReason.RECYCLED:
                raise
            # Recycling chose the patient under the ingest's room lock, which a user's
            # DELETE does not take: gone meanwhile is room made, not a reason to refuse
            # the instance being stored (it was answered 404 "unknown resource").
            log.info("patient %s to recycle was deleted meanwhile", resource_id)
            return Removed()

    def _delete(self, resource_id: str, reason: DeletionReason) -> Removed:
        gate = self._store.gate
        # A patient's studies are known for sure only once nobody can add one: its own
        # hold comes first. Any other resource lies in one study, known from its id.
        with gate.exclusive(self._patient_keys(resource_id)):
            studies = self._studies_of(resource_id)  # UnknownResource if absent
            with gate.exclusive(study_key(uid) for uid in studies):
                by_study = self._studies_of(resource_id)  # again: complete, now nothing adds
                self._index.mark_dirty(by_study)
                for study_uid, sop_uids in by_study.items():
                    self._store.delete_instances(study_uid, sop_uids)
                removed = self._index.remove(resource_id, reason, clear_dirty=by_study)
        for blob_id in removed.attachment_ids:
            self._attachments.delete(blob_id)
        return removed

    def _patient_keys(self, resource_id: str) -> list[str]:
        record = self._index.resource(resource_id)
        if record is not None and record["level"] == Level.PATIENT.value:
            return [resource_key(resource_id)]
        return []

    def _studies_of(self, resource_id: str) -> dict[str, set[str]]:
        """Study UID -> SOP Instance UIDs of the instances below (or at) the resource."""
        by_study: dict[str, set[str]] = {}
        for ref in self._index.instances_of([resource_id]):  # UnknownResource if absent
            by_study.setdefault(ref.study_uid, set()).add(ref.sop_uid)
        return by_study
