"""Making the index agree with the study store: start-up recovery and ``reindex``.

Storage is the truth for DICOM content. For a study, instances stored but not
indexed are indexed; instances indexed but not stored are removed from the
index; an instance whose content changed is re-indexed. User metadata,
attachments and protection of resources that still exist are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Origin, OriginKind
from pacsnode.storage.errors import NotFound
from pacsnode.storage.received import is_received_digest
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)
_RECOVERY_ORIGIN = Origin(kind=OriginKind.RECOVERY)


@dataclass
class ReconcileReport:
    studies: int = 0
    indexed: int = 0
    unindexed: int = 0


def reconcile_study(
    store: StudyStore, index: Index, study_uid: str, report: ReconcileReport
) -> None:
    try:
        stored = {i.sop_uid: i for i in store.instances(study_uid)}
    except NotFound:
        stored = {}
    ids = {sop_uid: index.ids_of(instance) for sop_uid, instance in stored.items()}
    indexed = index.indexed_instances(study_uid)
    for sop_uid, instance in stored.items():
        record = indexed.get(sop_uid)
        if (
            record is not None
            and is_received_digest(record.get("digest"))
            and record["id"] == ids[sop_uid][Level.INSTANCE]
            and index.record_conversions([(instance, ids[sop_uid], record["digest"])])
        ):
            # indexed as received; reading the study just converted it (storage/received.py)
            record["digest"] = instance.digest
    to_index = [
        (instance, ids[sop_uid])
        for sop_uid, instance in stored.items()
        if sop_uid not in indexed
        or indexed[sop_uid].get("digest") != instance.digest
        or indexed[sop_uid]["id"] != ids[sop_uid][Level.INSTANCE]
    ]
    to_unindex = [
        str(record["id"])
        for sop_uid, record in indexed.items()
        if sop_uid not in stored or record["id"] != ids[sop_uid][Level.INSTANCE]
    ]
    index.reconcile_study(study_uid, to_unindex, to_index, _RECOVERY_ORIGIN)
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


def recover(store: StudyStore, index: Index, pending: list[str]) -> ReconcileReport:
    """Reconcile the studies a crash may have left inconsistent."""
    report = ReconcileReport()
    for study_uid in sorted(set(pending) | set(index.dirty_studies())):
        reconcile_study(store, index, study_uid, report)
    return report


def reindex(store: StudyStore, index: Index) -> ReconcileReport:
    """Rebuild the DICOM part of the index from every study ZIP."""
    report = ReconcileReport()
    for study_uid in sorted(set(store.study_uids()) | index.indexed_study_uids()):
        reconcile_study(store, index, study_uid, report)
    return report
