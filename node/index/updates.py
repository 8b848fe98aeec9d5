"""The index's named updates: each runs in one write transaction with its change entries.

These functions take a :class:`Txn` and are called by :class:`pacsnode.node.index.Index`
through the single writer; nothing outside the index package sees a transaction.
"""

from __future__ import annotations

import json
from typing import Any

from pacsnode.node.dates import now_string
from pacsnode.node.errors import NotFound
from pacsnode.node.ids import Level
from pacsnode.node.index.annotation_keys import CoreKey
from pacsnode.node.index.changes import NEW_CHANGE_OF_LEVEL, ChangeType, append, append_export
from pacsnode.node.index.environment import Txn
from pacsnode.node.index.hierarchy import TOTAL_SIZE, add_instance, remove_resource, uids_of
from pacsnode.node.index.reads import (
    REGISTRY_PREFIX,
    current_metadata_revision,
    existing,
    existing_patient,
)
from pacsnode.node.index.records import AddedInstance, DeletionReason, Origin, Removed
from pacsnode.node.revisions import Revision, md5_of, next_revision
from pacsnode.node.series_status import series_status
from pacsnode.storage.results import StoredInstance

IndexedItem = tuple[StoredInstance, dict[Level, str]]


def index_instance(
    txn: Txn, instance: StoredInstance, ids: dict[Level, str], origin: Origin
) -> AddedInstance:
    """Add an instance to the index with its change entries."""
    now = now_string()
    added = add_instance(txn, instance, ids, origin, now)
    # Orthanc's order: the instance first, then each level it created, upwards.
    append(txn, ChangeType.NEW_INSTANCE, Level.INSTANCE, added.ids[Level.INSTANCE], now)
    for level in reversed(added.created):
        if level is not Level.INSTANCE:
            append(txn, NEW_CHANGE_OF_LEVEL[level], level, added.ids[level], now)
    expected = txn.metadata_value(ids[Level.SERIES], CoreKey.EXPECTED_NUMBER_OF_INSTANCES)
    completed = series_status(expected, added.series_instances) == "Complete"
    if completed and not added.replaced:  # the instance that made it complete
        append(txn, ChangeType.COMPLETED_SERIES, Level.SERIES, ids[Level.SERIES], now)
    return added


def index_instances(txn: Txn, items: list[IndexedItem], origin: Origin) -> list[AddedInstance]:
    return [index_instance(txn, instance, ids, origin) for instance, ids in items]


def remove_logged(txn: Txn, resource_id: str, reason: DeletionReason) -> Removed:
    """Remove a resource (and the ancestors it empties), logging a ``Deleted`` change each."""
    removed = remove_resource(txn, resource_id)
    now = now_string()
    for level, removed_id, uids in removed.resources:
        append(txn, ChangeType.DELETED, level, removed_id, now, Uids=uids, Reason=reason.value)
    # Ids derive from UIDs: a resource stored again gets its old id. What the feed said of
    # the removed one must not show as the new one's (Orthanc deletes those changes).
    seq = txn.last_change()
    for gone_id in removed.gone:
        txn.mark_removed(gone_id, seq)
    return removed


def reconcile_study(
    txn: Txn, study_uid: str, unindex: list[str], items: list[IndexedItem], origin: Origin
) -> None:
    """Make a study's index entries match what the study store holds."""
    for resource_id in unindex:
        remove_logged(txn, resource_id, DeletionReason.RECONCILE)
    index_instances(txn, items, origin)
    txn.clear_dirty(study_uid)


def log_exports(txn: Txn, resource_ids: list[str], remote: str) -> None:
    now = now_string()
    for resource_id in resource_ids:
        record = txn.resource(resource_id)
        if record is not None:  # deleted since it was sent: nothing left to name
            level = Level(record["level"])
            append_export(txn, level, resource_id, remote, uids_of(txn, record), now)


def announce_stable(txn: Txn, study_uid: str) -> None:
    """``StableSeries`` for each series and ``StableStudy`` for the study."""
    now = now_string()
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        for series_id in txn.children(study_id):
            append(txn, ChangeType.STABLE_SERIES, Level.SERIES, series_id, now)
        append(txn, ChangeType.STABLE_STUDY, Level.STUDY, study_id, now)


# --- annotations ---------------------------------------------------------------------


def _log_update(txn: Txn, record: dict[str, Any], change_type: ChangeType) -> None:
    append(txn, change_type, Level(record["level"]), record["id"], now_string())


def set_metadata(
    txn: Txn,
    resource_id: str,
    key: int,
    value: str,
    if_match: str | None = None,
    check: bool = False,
) -> Revision:
    """Write a metadata value; its new revision (RevisionConflict: see node.revisions)."""
    record = existing(txn, resource_id)
    number = next_revision(current_metadata_revision(txn, resource_id, key), if_match, check)
    txn.set_metadata(resource_id, key, value)
    txn.set_metadata_revision(resource_id, key, number)
    _log_update(txn, record, ChangeType.UPDATED_METADATA)
    return Revision(number, md5_of(value))


def delete_metadata(
    txn: Txn, resource_id: str, key: int, if_match: str | None = None, check: bool = False
) -> None:
    record = existing(txn, resource_id)
    current = current_metadata_revision(txn, resource_id, key)
    if current is None:
        raise NotFound(f"resource {resource_id} has no metadata {key}")
    next_revision(current, if_match, check)
    txn.delete_metadata(resource_id, key)
    txn.set_metadata_revision(resource_id, key, 0)
    _log_update(txn, record, ChangeType.UPDATED_METADATA)


def _attachment_revision(old: dict[str, Any] | None) -> Revision | None:
    return Revision(int(old.get("revision", 0)), old["md5"]) if old is not None else None


def set_attachment(
    txn: Txn,
    resource_id: str,
    content_type: int,
    info: dict[str, Any],
    if_match: str | None = None,
    check: bool = False,
) -> str | None:
    """Point the resource at a stored blob; return the blob id it replaces, if any."""
    record = existing(txn, resource_id)
    old = txn.attachments(resource_id).get(content_type)
    info = {**info, "revision": next_revision(_attachment_revision(old), if_match, check)}
    txn.set_attachment(resource_id, content_type, info)
    txn.add_to_counter(TOTAL_SIZE, info["compressed_size"] - (old["compressed_size"] if old else 0))
    _log_update(txn, record, ChangeType.UPDATED_ATTACHMENT)
    return str(old["uuid"]) if old else None


def delete_attachment(
    txn: Txn,
    resource_id: str,
    content_type: int,
    if_match: str | None = None,
    check: bool = False,
) -> str:
    """Detach; return the blob id to delete."""
    record = existing(txn, resource_id)
    old = txn.attachments(resource_id).get(content_type)
    if old is None:
        raise NotFound(f"resource {resource_id} has no attachment {content_type}")
    next_revision(_attachment_revision(old), if_match, check)
    txn.delete_attachment(resource_id, content_type)
    txn.add_to_counter(TOTAL_SIZE, -old["compressed_size"])
    _log_update(txn, record, ChangeType.UPDATED_ATTACHMENT)
    return str(old["uuid"])


def set_protected(txn: Txn, patient_id: str, protected: bool) -> None:
    existing_patient(txn, patient_id)
    if txn.is_protected(patient_id) != protected:
        txn.set_protected(patient_id, protected)
        now = now_string()
        append(txn, ChangeType.NEW_PROTECTION, Level.PATIENT, patient_id, now, Protected=protected)


def save_registry_entry(txn: Txn, kind: str, name: str, document: dict[str, Any] | None) -> None:
    txn.set_global(f"{REGISTRY_PREFIX}{kind}\x1f{name}", json.dumps(document))
