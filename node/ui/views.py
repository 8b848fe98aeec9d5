"""What each page shows, read from the node (blocking: handlers run these in a thread).

Each function returns plain values for a template; none renders HTML.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index.annotation_keys import CoreKey
from pacsnode.node.jobs import Job, JobRegistry, JobState
from pacsnode.node.registry import Registry
from pacsnode.node.ui import listing, tags

#: how far back the study page looks in the exports log for where a study was sent
_EXPORTS_LOOKED_AT = 2000
RECYCLING_SHOWN = 5
T = TypeVar("T")


@dataclass
class StudyRow:
    id: str
    patient_id: str
    patient_name: str
    date: str
    modalities: str
    description: str
    accession: str
    series: int
    instances: int
    size: int
    receiving: bool
    protected: bool


def _row(core: NodeCore, record: dict[str, Any], pending: set[str]) -> StudyRow:
    tags_ = {**record.get("patient_tags", {}), **record["tags"]}
    protected = False
    if record["parent"]:
        with contextlib.suppress(UnknownResource):
            protected = core.annotations.is_protected(record["parent"])
    return StudyRow(
        id=record["id"],
        patient_id=tags_.get("PatientID", ""),
        patient_name=tags_.get("PatientName", ""),
        date=tags_.get("StudyDate", ""),
        modalities=tags_.get("ModalitiesInStudy", "").replace("\\", ", "),
        description=tags_.get("StudyDescription", ""),
        accession=tags_.get("AccessionNumber", ""),
        series=len(record.get("children", ())),
        instances=int(record.get("instances", 0)),
        size=int(record.get("size", 0)),
        receiving=tags_.get("StudyInstanceUID", "") in pending,
        protected=protected,
    )


@dataclass
class StudyPage:
    rows: list[StudyRow]
    total: int  # matching the search
    everything: int  # studies on the node


class ListingCache:
    """The last few sort orders and search answers, valid while the index's change feed
    has not moved (every study added, changed or removed moves it): paging through a
    search, or coming back to the list, reads only the rows shown."""

    _KEPT = 16

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return cast(T, self._entries[key])
        value = make()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._KEPT:
                self._entries.popitem(last=False)
        return value


def search_studies(core: NodeCore, search: listing.Search, cache: ListingCache) -> StudyPage:
    """One page of studies: ids from the index's lookup order, records only for the rows
    shown; the search itself is the index's find (no record read when a lookup decides)."""
    query = listing.find_query(search.fields)
    keyword = listing.SORT_KEYWORDS[search.sort]
    version = core.last_change()
    ordered = cache.get(
        ("order", version, keyword), lambda: core.ids_in_order(Level.STUDY, keyword)
    )
    matching = None
    if query or search.fields.get("description"):
        asked = (version, tuple(sorted(search.fields.items())))
        matching = cache.get(("match", *asked), lambda: _matching(core, query, search, ordered))
    ids, total = listing.page_of(ordered, matching, search)
    pending = core.pending_studies()
    rows = []
    for study_id in ids:
        with contextlib.suppress(UnknownResource):  # deleted meanwhile
            rows.append(_row(core, core.resource(study_id, Level.STUDY), pending))
    return StudyPage(rows, total, len(ordered))


def _matching(
    core: NodeCore, query: dict[str, str], search: listing.Search, ordered: list[str]
) -> set[str]:
    matching = set(_find(core, query)) if query else None
    if search.fields.get("description"):
        candidates = ordered if matching is None else matching
        matching = _described(core, candidates, search.fields["description"])
    assert matching is not None
    return matching


def _find(core: NodeCore, query: dict[str, str]) -> list[str]:
    """The studies matching; a patient id or accession typed in another case than stored
    still matches (as Orthanc's /tools/find folds them), at the cost of a walk over the
    lookup's values, so the exact lookup is tried first."""
    found = core.find(Level.STUDY, query)
    if found or not {"PatientID", "AccessionNumber"} & set(query):
        return found
    return core.find(Level.STUDY, query, fold_identifiers=True)


def _described(core: NodeCore, candidates: Iterable[str], asked: str) -> set[str]:
    """The candidates whose description matches (a record read each: it is not indexed)."""
    found = set()
    for record in core.records(candidates):
        if record and listing.description_matches(
            asked, record["tags"].get("StudyDescription", "")
        ):
            found.add(record["id"])
    return found


# --- one study ----------------------------------------------------------------------------


@dataclass
class InstanceItem:
    id: str
    number: str
    sop_uid: str


@dataclass
class SeriesItem:
    id: str
    uid: str
    number: str
    modality: str
    description: str
    instances: int
    size: int
    items: list[InstanceItem] = field(default_factory=list)


@dataclass
class StudyDetail:
    row: StudyRow
    uid: str
    patient: dict[str, str]
    patient_uuid: str
    study_tags: dict[str, str]
    series: list[SeriesItem]
    origin: dict[str, str]
    received_from_peer: str
    sent_to: list[str]
    peers: list[str]
    modalities: list[str]


def _sort_key(number: str) -> tuple[int, str]:
    try:
        return int(float(number)), number
    except ValueError:
        return 1 << 31, number


def _series(core: NodeCore, series_id: str) -> SeriesItem | None:
    try:
        record = core.resource(series_id, Level.SERIES)
    except UnknownResource:
        return None
    items = [
        InstanceItem(i["id"], i["tags"].get("InstanceNumber", ""), i.get("sop_uid", ""))
        for i in core.records(record["children"])
        if i is not None
    ]
    items.sort(key=lambda item: _sort_key(item.number))
    tags_ = record["tags"]
    return SeriesItem(
        id=series_id,
        uid=tags_.get("SeriesInstanceUID", ""),
        number=tags_.get("SeriesNumber", ""),
        modality=tags_.get("Modality", ""),
        description=tags_.get("SeriesDescription", ""),
        instances=int(record.get("instances", 0)),
        size=int(record.get("size", 0)),
        items=items,
    )


_ORIGIN_KEYS = {
    CoreKey.ORIGIN: "Origin",
    CoreKey.RECEPTION_DATE: "Received",
    CoreKey.REMOTE_AET: "Calling AE title",
    CoreKey.REMOTE_IP: "Remote address",
    CoreKey.CALLED_AET: "Called AE title",
    CoreKey.PEER: "Peer",
}


#: how each way in reads on a page (the index keeps Orthanc's words)
_ORIGINS = {
    "RestApi": "uploaded (REST API)",
    "DicomProtocol": "sent over DICOM",
    "Peer": "replicated from a peer",
    "Import": "imported (pacsnode import)",
    "Recovery": "recovered from disk",
}


def _origin(core: NodeCore, study_id: str) -> dict[str, str]:
    """How the study's first instance arrived (the others may have come another way)."""
    first = core.first_instance(study_id)
    if first is None:
        return {}
    metadata = core.metadata_of(first.id)
    found = {name: metadata[key] for key, name in _ORIGIN_KEYS.items() if metadata.get(key)}
    if "Origin" in found:
        found["Origin"] = _ORIGINS.get(found["Origin"], found["Origin"])
    return found


def _sent_to(core: NodeCore, study_uid: str) -> list[str]:
    """Where the exports log says the study (or part of it) was sent, newest entries only."""
    last = core.last_export_page().last
    since = max(0, last - _EXPORTS_LOOKED_AT)
    names: list[str] = []
    while since < last:
        page = core.exports(since, 1000)
        for entry in page.changes:
            name = entry.get("RemoteModality", "")
            if entry.get("StudyInstanceUID") == study_uid and name and name not in names:
                names.append(name)
        if page.done or page.last <= since:
            break
        since = page.last
    return names


def study_detail(core: NodeCore, registry: Registry, study_id: str) -> StudyDetail:
    record = core.resource(study_id, Level.STUDY)
    row = _row(core, record, core.pending_studies())
    series = [s for s in map(lambda i: _series(core, i), record["children"]) if s is not None]
    series.sort(key=lambda s: _sort_key(s.number))
    origin = _origin(core, study_id)
    uid = record["tags"].get("StudyInstanceUID", "")
    return StudyDetail(
        row=row,
        uid=uid,
        patient=record.get("patient_tags", {}),
        patient_uuid=record["parent"] or "",
        study_tags=record["tags"],
        series=series,
        origin=origin,
        received_from_peer=origin.get("Peer", ""),
        sent_to=_sent_to(core, uid),
        peers=sorted(name for name, peer in registry.peers().items() if peer.url),
        modalities=sorted(registry.modalities()),
    )


def instance_tags(core: NodeCore, instance_id: str) -> tuple[dict[str, Any], list[tags.TagNode]]:
    """An instance's record and its DICOM JSON as a tree of readable nodes."""
    record = core.resource(instance_id, Level.INSTANCE)
    ref = core.instance_ref(instance_id)
    return record, tags.tree(core.instance_json(ref))


# --- jobs -------------------------------------------------------------------------------------


@dataclass
class JobItem:
    id: str
    type: str
    state: str
    progress: int
    created: str
    completed: str
    error: str
    summary: str
    description: dict[str, Any]
    details: dict[str, Any]
    active: bool


def _summary(job: Job) -> str:
    described = job.description
    for key in ("Peer", "Modality"):
        if key in described:
            count = len(described.get("Resources", ()))
            return f"{described[key]}" + (f" ({count} resources)" if count else "")
    return ", ".join(f"{k}: {v}" for k, v in described.items() if isinstance(v, str))


def job_items(jobs: JobRegistry, limit: int = 100) -> list[JobItem]:
    """The newest jobs first, running ones before finished ones."""
    items = []
    for job_id in reversed(jobs.ids()[-limit:]):
        with contextlib.suppress(Exception):  # dropped from the registry meanwhile
            job = jobs.get(job_id)
            active = job.state in (JobState.PENDING, JobState.RUNNING)
            items.append(
                JobItem(
                    id=job.id,
                    type=job.type,
                    state=job.state.value,
                    progress=job.progress,
                    created=job.created,
                    completed=job.completed or "",
                    error=job.error or "",
                    summary=_summary(job),
                    description=job.description,
                    details={k: v for k, v in job.content.items() if not isinstance(v, list)},
                    active=active,
                )
            )
    items.sort(key=lambda item: not item.active)
    return items


# --- peers ----------------------------------------------------------------------------------


@dataclass
class PeerRow:
    name: str
    kind: str
    url: str
    push: bool
    pull: bool
    schedule: str
    window: str
    last_contact: str
    last_success: str
    queued: int | None
    lag: int | None
    last_error: str
    last_error_time: str
    can_sync: bool
    syncs: list[JobItem]


def _schedule(interval_s: int, cron: str | None) -> str:
    if cron:
        return f"cron {cron}"
    if interval_s:
        return f"every {interval_s // 60} min" if interval_s % 60 == 0 else f"every {interval_s} s"
    return "on demand"


def peer_rows(
    core: NodeCore, registry: Registry, replicator: Any, jobs: JobRegistry
) -> list[PeerRow]:
    """Each peer's settings and state, with its recent syncs (the jobs still listed)."""
    last_change = core.last_change()
    recent = job_items(jobs, limit=500)
    rows = []
    for name, peer in sorted(registry.peers().items()):
        state = replicator.describe(name) if replicator is not None else {}
        pushes = bool(peer.push and peer.url)
        cursor = state.get("PushCursor")
        rows.append(
            PeerRow(
                name=name,
                kind=peer.kind,
                url=peer.url or "",
                push=peer.push,
                pull=peer.pull,
                schedule=_schedule(peer.interval_s, peer.schedule),
                window=peer.window or "",
                last_contact=state.get("LastContact") or "",
                last_success=state.get("LastSuccess") or "",
                queued=state.get("QueuedStudies"),
                lag=last_change - cursor if pushes and isinstance(cursor, int) else None,
                last_error=state.get("LastError") or "",
                last_error_time=state.get("LastErrorTime") or "",
                can_sync=peer.url is not None and replicator is not None,
                syncs=[
                    j for j in recent if j.type == "PeerSync" and j.description.get("Peer") == name
                ][:10],
            )
        )
    return rows


# --- system ---------------------------------------------------------------------------------


def system_info(core: NodeCore, config: Any, replicator: Any) -> dict[str, Any]:
    """Disk use against the limits, what recycling would remove next, protected patients,
    counts, listeners and the node's identity."""
    stats = core.statistics()
    limits = config.core
    max_bytes = limits.maximum_storage_size_mb * 1024 * 1024
    used = stats["TotalDiskSize"]
    next_out = []
    for patient_id, size in core.recycling_order(RECYCLING_SHOWN):
        (record,) = core.records([patient_id])
        next_out.append({"id": patient_id, "tags": (record or {}).get("tags", {}), "size": size})
    protected = []
    for patient_id in core.protected_patients()[:100]:
        with contextlib.suppress(UnknownResource):  # deleted meanwhile
            patient = core.resource(patient_id)
            studies = patient["children"]
            protected.append(
                {"id": patient_id, "tags": patient["tags"], "study": studies[0] if studies else ""}
            )
    identity = ""
    if replicator is not None:
        identity = replicator.identity.fingerprint
    else:
        # The identity alone (what `pacsnode identity` prints), not the replication
        # machinery: a node without peers keeps the scheduler unloaded.
        from pacsnode.peer.identity import load_or_create

        identity = load_or_create(config.data_dir / "identity").fingerprint
    http = config.http
    return {
        "stats": stats,
        "used": used,
        "max_bytes": max_bytes,
        "percent": min(100, used * 100 // max_bytes) if max_bytes else None,
        "max_patients": limits.maximum_patient_count,
        "mode": limits.maximum_storage_mode.value,
        "next_out": next_out,
        "protected": protected,
        "listeners": [
            ("REST and UI", f"http{'s' if http.tls_cert else ''}://{http.host}:{http.port}/"),
            ("DICOM", f"{config.dicom.aet} @ {config.dicom.host}:{config.dicom.port}"),
            (
                "Peering",
                f"https://{config.peering.host}:{config.peering.port}/"
                if config.peers or replicator is not None
                else "not listening (no peers)",
            ),
        ],
        "identity": identity,
        "data_dir": str(config.data_dir),
    }
