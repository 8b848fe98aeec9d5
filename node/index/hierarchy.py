"""The patient / study / series / instance hierarchy in the index: add and remove.

Functions here run inside one index transaction (:class:`Txn`), so
an instance appears with all its ancestors, lookups, metadata, counters and
changes at once, or not at all.
"""

from __future__ import annotations

from typing import Any

from pacsnode.node.ids import Level, resource_ids
from pacsnode.node.index.annotation_keys import CoreKey
from pacsnode.node.index.environment import Txn
from pacsnode.node.index.maintags import json_value, main_tags
from pacsnode.node.index.records import AddedInstance, Origin, OriginKind, Removed
from pacsnode.node.query import normalize
from pacsnode.storage.results import StoredInstance

# Secondary lookups per level. Person names are indexed upper-case (see
# pacsnode.node.query.normalize).
LOOKUP_KEYWORDS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: ("PatientID", "PatientName"),
    Level.STUDY: (
        "PatientID",
        "PatientName",
        "AccessionNumber",
        "StudyInstanceUID",
        "StudyDate",
        "ModalitiesInStudy",
    ),
    Level.SERIES: ("Modality", "SeriesInstanceUID"),
    Level.INSTANCE: ("SOPInstanceUID", "SOPClassUID"),
}
_UID_KEYWORDS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.INSTANCE: "SOPInstanceUID",
}
TOTAL_SIZE = "total_size"
TOTAL_UNCOMPRESSED = "total_uncompressed"


def count_name(level: Level) -> str:
    return f"count_{level.plural}"


def _lookup_values(level: Level, tags: dict[str, str]) -> list[tuple[str, str]]:
    values = []
    for keyword in LOOKUP_KEYWORDS[level]:
        value = tags.get(keyword)
        if value is None:
            continue
        parts = value.split("\\") if keyword == "ModalitiesInStudy" else [value]
        values.extend((keyword, normalize(keyword, part)) for part in parts if part)
    return values


def _index_tags(txn: Txn, level: Level, record: dict[str, Any], add: bool) -> None:
    tags = dict(record["tags"])
    if level is Level.STUDY:
        tags.update(record.get("patient_tags", {}))
    for keyword, value in _lookup_values(level, tags):
        if add:
            txn.add_lookup(level, keyword, value, record["id"])
        else:
            txn.remove_lookup(level, keyword, value, record["id"])
    if add:
        txn.add_to_level(level, record["id"])
    else:
        txn.remove_from_level(level, record["id"])


def _new_record(
    level: Level, resource_id: str, parent: str | None, metadata: dict[str, Any], now: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": resource_id,
        "level": level.value,
        "parent": parent,
        "tags": main_tags(metadata, level),
        "size": 0,
        "uncompressed": 0,
        "instances": 0,
        "created": now,
        "last_update": now,
    }
    if level is Level.STUDY:
        record["patient_tags"] = main_tags(metadata, Level.PATIENT)
        record["tags"]["ModalitiesInStudy"] = ""
    return record


def instance_ids(instance: StoredInstance) -> dict[Level, str]:
    """The ids of an instance and its ancestors (computed once per ingest)."""
    patient_key = json_value(instance.metadata, "PatientID") or ""
    return resource_ids(patient_key, instance.study_uid, instance.series_uid, instance.sop_uid)


def add_instance(
    txn: Txn, instance: StoredInstance, ids: dict[Level, str], origin: Origin, now: str
) -> AddedInstance:
    """Insert (or replace) an instance and create whatever ancestors it lacks.

    Each record of the four levels is read and written once: it gets its new sizes as it
    is updated (records are JSON, and this runs for every instance stored)."""
    added = AddedInstance(ids)
    old = txn.resource(ids[Level.INSTANCE])
    if old is not None:
        added.replaced = True
        _adjust_sizes(txn, ids, -old["size"], -old["uncompressed"], -1)
        _index_tags(txn, Level.INSTANCE, old, add=False)
    parent: str | None = None
    for level in Level:
        resource_id = ids[level]
        record = txn.resource(resource_id)
        if record is None:
            added.created.append(level)
            if parent is not None:
                txn.add_child(parent, resource_id)
            txn.add_to_counter(count_name(level), 1)
        if record is None or level is Level.INSTANCE:
            record = _new_record(level, resource_id, parent, instance.metadata, now)
            if level is Level.INSTANCE:
                record.update(_instance_fields(instance))
            _index_tags(txn, level, record, add=True)
        else:
            record["last_update"] = now
        record["size"] += instance.stored_size
        record["uncompressed"] += instance.uncompressed_size
        if level is not Level.INSTANCE:
            record["instances"] += 1
        if level is Level.SERIES:
            added.series_instances = record["instances"]
        txn.put_resource(record)
        if level is not Level.INSTANCE:  # an instance is never updated (Orthanc has none)
            txn.set_metadata(resource_id, CoreKey.LAST_UPDATE, now)
        parent = resource_id
    txn.add_to_counter(TOTAL_SIZE, instance.stored_size)
    txn.add_to_counter(TOTAL_UNCOMPRESSED, instance.uncompressed_size)
    if Level.SERIES in added.created:
        _add_modality(txn, ids[Level.STUDY], json_value(instance.metadata, "Modality"))
    _write_instance_metadata(txn, ids, instance, origin, now, added.series_instances)
    txn.touch_patient(ids[Level.PATIENT])
    return added


def record_conversion(
    txn: Txn, instance: StoredInstance, ids: dict[Level, str], received_digest: str
) -> bool:
    """An instance indexed as received (``storage/received.py``) is now converted: its
    record takes the content digest, the stored sizes (every level's totals move by the
    difference) and the Pixel Data offset. Nothing else changes (its tags were read from
    the same elements), and no change is logged. False when the record no longer has
    ``received_digest`` (deleted meanwhile, received again, or stored again the converting
    way)."""
    record = txn.resource(ids[Level.INSTANCE])
    if record is None or record.get("digest") != received_digest:
        return False
    size = instance.stored_size - record["size"]
    uncompressed = instance.uncompressed_size - record["uncompressed"]
    _adjust_sizes(txn, ids, size, uncompressed, 0)
    record = txn.resource(ids[Level.INSTANCE])
    assert record is not None
    record["digest"] = instance.digest
    txn.put_resource(record)
    _write_pixel_data_offset(txn, ids[Level.INSTANCE], instance)
    return True


def _instance_fields(instance: StoredInstance) -> dict[str, Any]:
    return {
        "size": 0,
        "uncompressed": 0,
        "digest": instance.digest,
        "study_uid": instance.study_uid,
        "series_uid": instance.series_uid,
        "sop_uid": instance.sop_uid,
    }


def _adjust_sizes(
    txn: Txn, ids: dict[Level, str], size: int, uncompressed: int, instances: int
) -> None:
    for level in Level:
        record = txn.resource(ids[level])
        if record is None:
            continue
        record["size"] += size
        record["uncompressed"] += uncompressed
        if level is not Level.INSTANCE:
            record["instances"] += instances
        txn.put_resource(record)
    txn.add_to_counter(TOTAL_SIZE, size)
    txn.add_to_counter(TOTAL_UNCOMPRESSED, uncompressed)


def _add_modality(txn: Txn, study_id: str, modality: str | None) -> None:
    if not modality:
        return
    study = txn.resource(study_id)
    if study is None:
        return
    present = [m for m in study["tags"].get("ModalitiesInStudy", "").split("\\") if m]
    if modality in present:
        return
    study["tags"]["ModalitiesInStudy"] = "\\".join(sorted([*present, modality]))
    txn.put_resource(study)
    txn.add_lookup(Level.STUDY, "ModalitiesInStudy", modality, study_id)


def _write_instance_metadata(
    txn: Txn,
    ids: dict[Level, str],
    instance: StoredInstance,
    origin: Origin,
    now: str,
    series_instances: int,
) -> None:
    instance_id = ids[Level.INSTANCE]
    values = {
        CoreKey.RECEPTION_DATE: now,
        CoreKey.ORIGIN: origin.kind,
        CoreKey.REMOTE_AET: origin.remote_aet,
        CoreKey.CALLED_AET: origin.called_aet,
        CoreKey.REMOTE_IP: origin.remote_ip,
        CoreKey.PEER: origin.peer,
        CoreKey.TRANSFER_SYNTAX: json_value(instance.metadata, "AvailableTransferSyntaxUID"),
        CoreKey.SOP_CLASS_UID: json_value(instance.metadata, "SOPClassUID"),
        CoreKey.INDEX_IN_SERIES: str(series_instances),
    }
    for key, value in values.items():
        if value:
            txn.set_metadata(instance_id, key, value)
    # Written even empty, as Orthanc does: scripts read them whatever the origin.
    txn.set_metadata(instance_id, CoreKey.REMOTE_AET, origin.remote_aet)
    txn.set_metadata(ids[Level.SERIES], CoreKey.REMOTE_AET, origin.remote_aet)
    if origin.kind is OriginKind.REST_API:
        txn.set_metadata(instance_id, CoreKey.HTTP_USERNAME, origin.http_username)
    _write_pixel_data_offset(txn, instance_id, instance)
    expected = expected_instances(instance.metadata)
    if expected is not None:
        txn.set_metadata(ids[Level.SERIES], CoreKey.EXPECTED_NUMBER_OF_INSTANCES, str(expected))


def _write_pixel_data_offset(txn: Txn, instance_id: str, instance: StoredInstance) -> None:
    if instance.pixel_data_offset is not None or "7FE00010" in instance.metadata:
        # empty when the file is regenerated, as Orthanc leaves it for a file it cannot place
        offset = "" if instance.pixel_data_offset is None else str(instance.pixel_data_offset)
        txn.set_metadata(instance_id, CoreKey.PIXEL_DATA_OFFSET, offset)


def expected_instances(metadata: dict[str, Any]) -> int | None:
    """How many instances a series says it has, the way Orthanc reads it: Cardiac
    Number of Images when present (0: unknown), else Images in Acquisition times the
    Number of Temporal Positions."""

    def number(keyword: str) -> int | None:
        text = json_value(metadata, keyword)
        try:
            return int(float(text)) if text else None
        except ValueError:
            return None

    cardiac = number("CardiacNumberOfImages")
    if cardiac is not None:
        return cardiac or None
    images = number("ImagesInAcquisition")
    if not images:
        return None
    return images * (number("NumberOfTemporalPositions") or 1)


# --- removal --------------------------------------------------------------------------


def instances_under(txn: Txn, resource_id: str) -> list[dict[str, Any]]:
    """Every instance record below (or at) a resource."""
    record = txn.resource(resource_id)
    if record is None:
        return []
    if record["level"] == Level.INSTANCE.value:
        return [record]
    found: list[dict[str, Any]] = []
    for child in txn.children(resource_id):
        found.extend(instances_under(txn, child))
    return found


def uids_of(txn: Txn, record: dict[str, Any]) -> dict[str, str]:
    """The identifying UIDs of a resource (its own and its ancestors')."""
    uids: dict[str, str] = {}
    current: dict[str, Any] | None = record
    while current is not None:
        level = Level(current["level"])
        keyword = _UID_KEYWORDS[level]
        uids[keyword] = current["tags"].get(keyword, "")
        current = txn.resource(current["parent"]) if current["parent"] else None
    return uids


def remove_resource(txn: Txn, resource_id: str) -> Removed:
    """Remove a resource, everything below it, and ancestors it leaves empty."""
    removed = Removed()
    record = txn.resource(resource_id)
    if record is None:
        return removed
    for instance in instances_under(txn, resource_id):
        removed.instances_by_study.setdefault(instance["study_uid"], set()).add(instance["sop_uid"])
    removed.resources.append((Level(record["level"]), resource_id, uids_of(txn, record)))
    parent_id = record["parent"]
    size, uncompressed, count = record["size"], record["uncompressed"], record.get("instances", 1)
    if record["level"] == Level.INSTANCE.value:
        count = 1
    _remove_subtree(txn, record, removed)
    _shrink_ancestors(txn, parent_id, resource_id, size, uncompressed, count, removed)
    txn.add_to_counter(TOTAL_SIZE, -size)
    txn.add_to_counter(TOTAL_UNCOMPRESSED, -uncompressed)
    return removed


def _remove_subtree(txn: Txn, record: dict[str, Any], removed: Removed) -> None:
    level = Level(record["level"])
    for child_id in txn.children(record["id"]):
        child = txn.resource(child_id)
        if child is not None:
            _remove_subtree(txn, child, removed)
        txn.remove_child(record["id"], child_id)
    _index_tags(txn, level, record, add=False)
    for key in txn.metadata(record["id"]):
        txn.delete_metadata(record["id"], key)
        txn.set_metadata_revision(record["id"], key, 0)
    for content_type, info in txn.attachments(record["id"]).items():
        removed.attachment_ids.append(info["uuid"])
        txn.delete_attachment(record["id"], content_type)
        txn.add_to_counter(TOTAL_SIZE, -info["compressed_size"])
    if level is Level.PATIENT:
        txn.forget_patient(record["id"])
        txn.set_protected(record["id"], False)
    txn.delete_resource(record["id"])
    txn.add_to_counter(count_name(level), -1)
    removed.gone.append(record["id"])


def _shrink_ancestors(
    txn: Txn,
    parent_id: str | None,
    child_id: str,
    size: int,
    uncompressed: int,
    count: int,
    removed: Removed,
) -> None:
    """Walk up from a removed resource: unlink it, drop emptied ancestors, shrink the rest."""
    unlinking = True
    while parent_id is not None:
        parent = txn.resource(parent_id)
        if parent is None:
            return
        next_parent = parent["parent"]
        if unlinking:
            txn.remove_child(parent_id, child_id)
            unlinking = not txn.children(parent_id)
        if unlinking:
            removed.resources.append((Level(parent["level"]), parent_id, uids_of(txn, parent)))
            _remove_subtree(txn, parent, removed)
        else:
            parent["size"] -= size
            parent["uncompressed"] -= uncompressed
            parent["instances"] -= count
            txn.put_resource(parent)
            _refresh_modalities(txn, parent)
        child_id, parent_id = parent_id, next_parent


def _refresh_modalities(txn: Txn, record: dict[str, Any]) -> None:
    if record["level"] != Level.STUDY.value:
        return
    modalities = set()
    for series_id in txn.children(record["id"]):
        series = txn.resource(series_id)
        if series and series["tags"].get("Modality"):
            modalities.add(series["tags"]["Modality"])
    for old in record["tags"].get("ModalitiesInStudy", "").split("\\"):
        if old and old not in modalities:
            txn.remove_lookup(Level.STUDY, "ModalitiesInStudy", old, record["id"])
    record["tags"]["ModalitiesInStudy"] = "\\".join(sorted(modalities))
    txn.put_resource(record)
