"""The index's named reads that combine records: each runs in one read snapshot.

These functions take a :class:`Txn` and are called by :class:`pacsnode.node.index.Index`;
nothing outside the index package sees a transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pacsnode.node.errors import BadRequest, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index.annotation_keys import CoreKey
from pacsnode.node.index.environment import Txn
from pacsnode.node.index.hierarchy import TOTAL_SIZE, TOTAL_UNCOMPRESSED, count_name
from pacsnode.node.index.hierarchy import instances_under as instance_records_under
from pacsnode.node.index.lookups import tags_with_ancestors
from pacsnode.node.index.records import InstanceRef, ResourceAnnotations
from pacsnode.node.recycling import Usage
from pacsnode.node.revisions import Revision, md5_of


def existing(txn: Txn, resource_id: str) -> dict[str, Any]:
    """The resource's record; :class:`UnknownResource` when there is none."""
    record = txn.resource(resource_id)
    if record is None:
        raise UnknownResource(f"no resource {resource_id}")
    return record


def existing_patient(txn: Txn, patient_id: str) -> dict[str, Any]:
    record = existing(txn, patient_id)
    if record["level"] != Level.PATIENT.value:
        raise BadRequest("protection is set on patients only")
    return record


def resource_with_children(txn: Txn, resource_id: str, level: Level | None) -> dict[str, Any]:
    record = txn.resource(resource_id)
    if record is None or (level is not None and record["level"] != level.value):
        raise UnknownResource(f"no {(level or 'resource').lower()} {resource_id}")
    return {**record, "children": txn.children(resource_id)}


def metadata_of(txn: Txn, resource_id: str) -> dict[int, str]:
    existing(txn, resource_id)
    return txn.metadata(resource_id)


def attachments_of(txn: Txn, resource_id: str) -> dict[int, dict[str, Any]]:
    existing(txn, resource_id)
    return txn.attachments(resource_id)


def metadata_entry(txn: Txn, resource_id: str, key: int) -> tuple[str, Revision] | None:
    """A metadata value with its revision, read together; None when it is not set."""
    value = txn.metadata_value(resource_id, key)
    if value is None:
        return None
    return value, Revision(txn.metadata_revision(resource_id, key), md5_of(value))


def current_metadata_revision(txn: Txn, resource_id: str, key: int) -> Revision | None:
    entry = metadata_entry(txn, resource_id, key)
    return entry[1] if entry is not None else None


def is_protected(txn: Txn, patient_id: str) -> bool:
    existing_patient(txn, patient_id)
    return txn.is_protected(patient_id)


def ancestors(txn: Txn, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records above a resource, nearest first."""
    chain = []
    while record["parent"]:
        parent = txn.resource(record["parent"])
        if parent is None:
            break
        chain.append(parent)
        record = parent
    return chain


def instance_ref(txn: Txn, record: dict[str, Any]) -> InstanceRef:
    return InstanceRef(
        id=record["id"],
        study_uid=record["study_uid"],
        series_uid=record["series_uid"],
        sop_uid=record["sop_uid"],
        sop_class_uid=record["tags"].get("SOPClassUID", ""),
        transfer_syntax=txn.metadata_value(record["id"], CoreKey.TRANSFER_SYNTAX) or "",
    )


def instances_of(txn: Txn, resource_ids: Iterable[str]) -> list[InstanceRef]:
    """The instances below (or at) each resource, in order; unknown ids are refused."""
    found: list[InstanceRef] = []
    for resource_id in resource_ids:
        if txn.resource(resource_id) is None:
            raise UnknownResource(f"no resource {resource_id}")
        found.extend(instance_ref(txn, r) for r in instance_records_under(txn, resource_id))
    return found


def indexed_instances(txn: Txn, study_uid: str) -> dict[str, dict[str, Any]]:
    """SOP UID -> instance record, for every study resource carrying this Study UID."""
    found: dict[str, dict[str, Any]] = {}
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        for record in instance_records_under(txn, study_id):
            found[str(record["sop_uid"])] = record
    return found


def indexed_study_uids(txn: Txn) -> set[str]:
    uids = set()
    for study_id in txn.level_ids(Level.STUDY):
        record = txn.resource(study_id)
        if record is not None:
            uids.add(record["tags"].get("StudyInstanceUID", ""))
    uids.discard("")
    return uids


def patients_of_study(txn: Txn, study_uid: str) -> set[str]:
    found = set()
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        record = txn.resource(study_id)
        if record is not None and record["parent"]:
            found.add(record["parent"])
    return found


def studies_of(txn: Txn, resource_id: str) -> list[str]:
    """The Study Instance UIDs a resource belongs to or holds (none if it is gone)."""
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


def _resources_of_study(txn: Txn, study_uid: str) -> list[dict[str, Any]]:
    """The study's patient, the study, its series and its instances."""
    found: dict[str, dict[str, Any]] = {}
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        study = txn.resource(study_id)
        if study is None:
            continue
        patient = txn.resource(study["parent"]) if study["parent"] else None
        for record in (patient, study):
            if record is not None:
                found[record["id"]] = record
        for series_id in txn.children(study_id):
            series = txn.resource(series_id)
            if series is not None:
                found[series_id] = series
        for instance in instance_records_under(txn, study_id):
            found[instance["id"]] = instance
    return list(found.values())


def study_annotations(txn: Txn, study_uid: str) -> list[ResourceAnnotations]:
    return [
        ResourceAnnotations(
            record,
            txn.metadata(record["id"]),
            txn.attachments(record["id"]),
            record["level"] == Level.PATIENT.value and txn.is_protected(record["id"]),
        )
        for record in _resources_of_study(txn, study_uid)
    ]


def query_answer(txn: Txn, resource_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """What a C-FIND match answers with: its tags (with its ancestors') and its
    related-object counts; empty when it was deleted meanwhile."""
    record = txn.resource(resource_id)
    if record is None:
        return {}, {}
    level = Level(record["level"])
    counts = {}
    if level is Level.STUDY:
        counts["NumberOfStudyRelatedInstances"] = record["instances"]
        counts["NumberOfStudyRelatedSeries"] = len(txn.children(resource_id))
    elif level is Level.SERIES:
        counts["NumberOfSeriesRelatedInstances"] = record["instances"]
    elif level is Level.PATIENT:
        studies = txn.children(resource_id)
        counts["NumberOfPatientRelatedStudies"] = len(studies)
        counts["NumberOfPatientRelatedSeries"] = sum(len(txn.children(s)) for s in studies)
        counts["NumberOfPatientRelatedInstances"] = record["instances"]
    return tags_with_ancestors(txn, record), counts


def first_instance(txn: Txn, resource_id: str) -> InstanceRef | None:
    """One instance below (or at) a resource, the first child at each level: what a query
    reads for attributes the index does not keep. None when there is none (deleted)."""
    record = txn.resource(resource_id)
    while record is not None and record["level"] != Level.INSTANCE.value:
        children = txn.children(record["id"])
        record = txn.resource(children[0]) if children else None
    return instance_ref(txn, record) if record is not None else None


def usage(txn: Txn) -> Usage:
    return Usage(txn.counter(TOTAL_SIZE), txn.counter(count_name(Level.PATIENT)))


def recycling_candidates(txn: Txn, keep: set[str]) -> Iterator[tuple[str, int]]:
    """(patient id, bytes), least recently updated first, unprotected, not in ``keep``."""
    for patient_id in txn.patients_oldest_first():
        if patient_id in keep or txn.is_protected(patient_id):
            continue
        record = txn.resource(patient_id)
        if record is not None:
            yield patient_id, record["size"]


def statistics(txn: Txn) -> dict[str, int]:
    counts = {
        f"Count{level.plural.capitalize()}": txn.counter(count_name(level)) for level in Level
    }
    return {
        **counts,
        "TotalDiskSize": txn.counter(TOTAL_SIZE),
        "TotalUncompressedSize": txn.counter(TOTAL_UNCOMPRESSED),
        "LastChange": txn.last_change(),
    }


def resource_statistics(txn: Txn, resource_id: str) -> dict[str, int]:
    """Counts below a resource and its sizes, attachments included (as Orthanc counts)."""
    record = existing(txn, resource_id)
    counts = {level: 0 for level in Level}
    attached = attached_uncompressed = 0
    pending = [record]
    while pending:
        current = pending.pop()
        counts[Level(current["level"])] += 1
        for info in txn.attachments(current["id"]).values():
            attached += info["compressed_size"]
            attached_uncompressed += info["size"]
        if current["level"] != Level.INSTANCE.value:
            pending.extend(r for r in map(txn.resource, txn.children(current["id"])) if r)
    return {
        **{f"Count{level.plural.capitalize()}": counts[level] for level in Level},
        "DiskSize": record["size"] + attached,
        "UncompressedSize": record["uncompressed"] + attached_uncompressed,
        "DicomDiskSize": record["size"],
        "DicomUncompressedSize": record["uncompressed"],
    }


REGISTRY_PREFIX = "registry\x1f"


def registry_entries(txn: Txn) -> dict[tuple[str, str], dict[str, Any] | None]:
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    for name, value in txn.globals_with_prefix(REGISTRY_PREFIX):
        kind, _, entry = name[len(REGISTRY_PREFIX) :].partition("\x1f")
        found[(kind, entry)] = json.loads(value)
    return found


def ids_in_order(txn: Txn, level: Level, keyword: str) -> list[str]:
    """Ids of ``level`` by the indexed value of ``keyword`` (ascending), then those without
    one: a sorted listing walks the lookup, it reads no record. A multi-valued keyword
    (ModalitiesInStudy) places a resource at its first value."""
    seen: set[str] = set()
    ordered: list[str] = []
    for _, resource_id in txn.lookup_scan(level, keyword):
        if resource_id not in seen:
            seen.add(resource_id)
            ordered.append(resource_id)
    if len(ordered) < txn.counter(count_name(level)):
        ordered.extend(i for i in txn.level_ids(level) if i not in seen)
    return ordered


def recycling_order(txn: Txn, count: int) -> list[tuple[str, int]]:
    """The first ``count`` patients recycling would remove, (id, bytes), oldest first."""
    found: list[tuple[str, int]] = []
    for candidate in recycling_candidates(txn, set()):
        if len(found) >= count:
            break
        found.append(candidate)
    return found


def protected_patients(txn: Txn) -> list[str]:
    return [p for p in txn.patients_oldest_first() if txn.is_protected(p)]
