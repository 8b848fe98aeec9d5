"""Making the index agree with the study store: start-up recovery and ``reindex``.

Storage is the truth for DICOM content. For a study, instances stored but not
indexed are indexed; instances indexed but not stored are removed from the
index; an instance whose content changed is re-indexed. User metadata,
attachments and protection of resources that still exist are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pacsnode.node.deletion import log_removal
from pacsnode.node.hierarchy import Origin, instances_under, remove_resource
from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Txn
from pacsnode.node.ingest import index_instance, instance_ids
from pacsnode.node.writer import IndexWriter
from pacsnode.storage.errors import NotFound
from pacsnode.storage.results import StoredInstance
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)
_RECOVERY_ORIGIN = Origin(kind="Recovery")


@dataclass
class ReconcileReport:
    studies: int = 0
    indexed: int = 0
    unindexed: int = 0


def indexed_instances(txn: Txn, study_uid: str) -> dict[str, dict[str, object]]:
    """SOP UID -> instance record, for every study resource carrying this Study UID."""
    found: dict[str, dict[str, object]] = {}
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        for record in instances_under(txn, study_id):
            found[str(record["sop_uid"])] = record
    return found


def reconcile_study(
    store: StudyStore, index: Index, writer: IndexWriter, study_uid: str, report: ReconcileReport
) -> None:
    try:
        stored = {i.sop_uid: i for i in store.instances(study_uid)}
    except NotFound:
        stored = {}
    indexed = index.read(lambda txn: indexed_instances(txn, study_uid))
    to_index: list[StoredInstance] = [
        instance
        for sop_uid, instance in stored.items()
        if sop_uid not in indexed
        or indexed[sop_uid].get("digest") != instance.digest
        or indexed[sop_uid]["id"] != instance_ids(instance)[Level.INSTANCE]
    ]
    to_unindex = [
        str(record["id"])
        for sop_uid, record in indexed.items()
        if sop_uid not in stored or record["id"] != instance_ids(stored[sop_uid])[Level.INSTANCE]
    ]

    def apply(txn: Txn) -> None:
        for resource_id in to_unindex:
            log_removal(txn, remove_resource(txn, resource_id), "Reconcile")
        for instance in to_index:
            index_instance(txn, instance, _RECOVERY_ORIGIN)
        txn.clear_dirty(study_uid)

    writer.run(apply)
    report.studies += 1
    report.indexed += len(to_index)
    report.unindexed += len(to_unindex)
    if to_index or to_unindex:
        log.warning(
            "study %s: indexed %d, unindexed %d instances to match storage",
            study_uid,
            len(to_index),
            len(to_unindex),
        )


def recover(
    store: StudyStore, index: Index, writer: IndexWriter, pending: list[str]
) -> ReconcileReport:
    """Reconcile the studies a crash may have left inconsistent."""
    report = ReconcileReport()
    studies = set(pending) | set(index.read(lambda txn: txn.dirty_studies()))
    for study_uid in sorted(studies):
        reconcile_study(store, index, writer, study_uid, report)
    return report


def reindex(store: StudyStore, index: Index, writer: IndexWriter) -> ReconcileReport:
    """Rebuild the DICOM part of the index from every study ZIP."""
    report = ReconcileReport()
    on_disk = set(store.study_uids())

    def indexed_studies(txn: Txn) -> set[str]:
        uids = set()
        for study_id in txn.level_ids(Level.STUDY):
            record = txn.resource(study_id)
            if record is not None:
                uids.add(record["tags"].get("StudyInstanceUID", ""))
        return uids

    for study_uid in sorted(on_disk | index.read(indexed_studies)):
        if study_uid:
            reconcile_study(store, index, writer, study_uid, report)
    return report
