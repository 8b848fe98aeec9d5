"""One function per DIMSE event, bound to the node core, returning DIMSE statuses.

C-FIND, C-MOVE and C-GET handlers are generators, as pynetdicom expects.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pynetdicom import events, evt

from pacsnode.node import audit
from pacsnode.node.core import NodeCore
from pacsnode.node.dicom.admission import Caller, KnownCallers
from pacsnode.node.dicom.encoding import received_p10
from pacsnode.node.dicom.network import contexts_for, set_nodelay
from pacsnode.node.dicom.outgoing import outgoing
from pacsnode.node.dicom.query import (
    SOP_CLASSES_IN_STUDY,
    Charset,
    FindRequest,
    Match,
    answer,
    parse_request,
    query_level,
    retrieve_query,
)
from pacsnode.node.encodings import DEFAULT_ENCODING_SETTING, specific_character_set
from pacsnode.node.errors import DomainError
from pacsnode.node.ids import Level
from pacsnode.node.index import InstanceRef, Origin, OriginKind
from pacsnode.node.jobs import JobRegistry
from pacsnode.node.registry import Registry
from pacsnode.node.settings import NodeConfig

log = logging.getLogger(__name__)
#: how a stored file (P10 bytes) goes to the peer (node/dicom/outgoing.py)
Fit = Callable[[bytes], Dataset]

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
UNABLE_TO_PROCESS = 0xC000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNKNOWN_MOVE_DESTINATION = 0xA801
#: "Refused: Out of resources - Unable to perform sub-operations" (PS3.4 C.4.2.1.5, C.4.3.1.4)
SUB_OPERATIONS_FAILED = 0xA702


def _not_allowed() -> Dataset:
    """The failure an unknown caller gets for a query or retrieve (Unable to process,
    with the reason: DCMTK shows no other refusal for C-FIND)."""
    status = Dataset()
    status.Status = UNABLE_TO_PROCESS
    status.ErrorComment = "the calling AE title is not a known modality"
    return status


def caller_allowed(event: events.Event, config: NodeConfig, known: KnownCallers) -> bool:
    """Whether the caller may query and retrieve. Unknown callers are refused the whole
    association unless anyone may store (``always_allow_store``): then here, per service,
    by AE title and (``check_caller_host``) the host it calls from."""
    if config.dicom.accept_unknown_callers:
        return True
    return known.known(_caller(event), config.dicom.check_caller_host)


def _caller(event: events.Event) -> Caller:
    requestor = event.assoc.requestor
    called = getattr(requestor.primitive, "called_ae_title", "")
    return Caller(str(requestor.ae_title).strip(), str(called).strip(), str(requestor.address))


def handle_echo(event: events.Event) -> int:
    return SUCCESS


def handle_store(event: events.Event, core: NodeCore, aet: str) -> int | Dataset:
    requestor = event.assoc.requestor
    # the AE title the caller called, which need not be ours (Orthanc records it so)
    called = getattr(requestor.primitive, "called_ae_title", "") or aet
    origin = Origin(
        kind=OriginKind.DICOM,
        remote_aet=requestor.ae_title.strip(),
        called_aet=str(called).strip(),
        remote_ip=requestor.address,
    )
    try:
        result = core.ingest(received_p10(event), origin)
    except DomainError as exc:
        log.warning("C-STORE from %s refused: %s", origin.remote_aet, exc.message)
        _audit_store(event, origin, f"refused: {exc.message[:120]}")
        status = Dataset()
        status.Status = exc.dimse_status
        status.ErrorComment = exc.message[:64]
        return status
    except Exception:
        log.exception("C-STORE from %s failed", origin.remote_aet)
        _audit_store(event, origin, "failed")
        return UNABLE_TO_PROCESS
    stored = result.instance
    _audit_store(
        event, origin, result.status.value, stored.study_uid, audit.patient_of(stored.metadata)
    )
    return SUCCESS


def _audit_store(
    event: events.Event, origin: Origin, outcome: str, study: str = "", patient: str = ""
) -> None:
    """The instance by its SOP Instance UID from the command set (a refused one's dataset is
    not decoded again for the log: that would cost the ingest's time twice)."""
    sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
    audit.dicom_store(origin.remote_aet, origin.remote_ip, sop, study, patient, outcome)


def _audited_query(event: events.Event) -> dict[str, str]:
    """The keys a C-FIND matches on that name a resource (never the whole identifier)."""
    try:
        identifier = event.identifier
    except Exception:
        return {}
    return {
        key: str(identifier.get(key, ""))
        for key in ("QueryRetrieveLevel", "PatientID", "StudyInstanceUID", "AccessionNumber")
        if identifier.get(key, "")
    }


def _audited_refs(refs: list[InstanceRef] | None) -> dict[str, Any]:
    refs = refs or []
    return {
        "studies": sorted({ref.study_uid for ref in refs if getattr(ref, "study_uid", "")})[:50],
        "instances": len(refs),
    }


def _charset(core: NodeCore, config: NodeConfig) -> Charset:
    """The node's default encoding now (it can be changed over REST at any time)."""
    name = core.setting(DEFAULT_ENCODING_SETTING, config.dicom.default_encoding)
    return Charset(specific_character_set(name))


def _matching(core: NodeCore, request: FindRequest, cap: int | None) -> Iterator[Match]:
    """The matches, with what answering them needs; at most ``cap`` of them."""
    ids = core.find_constraints(request.level, request.constraints, limit=cap)
    wants_sop_classes = request.level is Level.STUDY and any(
        keyword_for_tag(tag) == SOP_CLASSES_IN_STUDY for tag in request.requested
    )
    found = 0
    for resource_id in ids:
        tags, counts = core.query_answer(resource_id)
        if not tags:  # deleted meanwhile
            continue
        match = Match(tags, counts)
        # one stored sequence item must match all the item keys of a sequence key
        accept = request.items_match if request.asks_items else None
        if accept is not None or request.needs_file(tags):
            metadata = core.matching_instance_json(
                resource_id, request.level, request.constraints, accept
            )
            if metadata is None and accept is not None:
                continue  # no instance holds such an item: not a match
            match.metadata = metadata if metadata is not None else {}
        if wants_sop_classes:
            refs = core.instances_of([resource_id])
            match.sop_classes = sorted({r.sop_class_uid for r in refs if r.sop_class_uid})
        yield match
        found += 1
        if cap is not None and found >= cap:
            return


def handle_find(
    event: events.Event, core: NodeCore, config: NodeConfig, known: KnownCallers
) -> Iterator[tuple[int, Dataset | None]]:
    caller = _caller(event)
    if not caller_allowed(event, config, known):
        audit.dicom_operation("C-FIND", caller.calling_aet, caller.address, "refused")
        yield _not_allowed(), None
        return
    audit.dicom_operation(
        "C-FIND", caller.calling_aet, caller.address, "accepted", query=_audited_query(event)
    )
    identifier = event.identifier
    level = query_level(identifier)
    if level is None:
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    charset = _charset(core, config)
    if "SpecificCharacterSet" not in identifier:
        # A query that names no character set is read in the default encoding.
        identifier.SpecificCharacterSet = charset.term
    try:
        request = parse_request(identifier, level)
        for match in _matching(core, request, config.find.cap(level is Level.INSTANCE)):
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer(request, match, charset, config.dicom.aet)
    except DomainError as exc:
        # A refused query (a bad value) does not match; anything else (an index plugin
        # failing, a query too broad) fails with its own status and says why.
        log.warning("C-FIND refused: %s", exc.message)
        yield _find_failure(exc), None


def _find_failure(exc: DomainError) -> int | Dataset:
    if exc.dimse_status == IDENTIFIER_DOES_NOT_MATCH:
        return IDENTIFIER_DOES_NOT_MATCH
    status = Dataset()
    status.Status = exc.dimse_status
    status.ErrorComment = exc.message[:64]
    return status


def _requested_instances(core: NodeCore, identifier: Dataset) -> list[InstanceRef] | None:
    """The instances a C-MOVE or C-GET asks for; None when it names nothing."""
    found = retrieve_query(identifier)
    if found is None:
        return None
    level, key = found
    try:
        return core.instances_of(core.find(level, key))
    except DomainError:
        return None


def _datasets(
    core: NodeCore, refs: list[InstanceRef], event: events.Event, fit: Fit
) -> Iterator[tuple[int, Dataset | None]]:
    """Each instance, read ahead: the next one is read (its P10 put together, its frames
    inflated, which frees the GIL) in a thread while pynetdicom sends the one before, so
    a retrieve uses both the time the peer takes to answer and a second core."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve-read") as reader:

        def read(ref: InstanceRef) -> Future[Dataset]:
            return reader.submit(lambda: fit(core.instance_p10(ref)))

        upcoming = read(refs[0]) if refs else None
        for index, ref in enumerate(refs):
            if event.is_cancelled:
                yield CANCEL, None
                return
            assert upcoming is not None
            try:
                dataset = upcoming.result()
            except DomainError as exc:
                # Storage that stopped answering (a bucket down), an instance deleted
                # meanwhile: the retrieve ends with a failure status, not an exception in
                # pynetdicom.
                log.warning("retrieve stopped at instance %s: %s", ref.id, exc.message)
                yield SUB_OPERATIONS_FAILED, None
                return
            upcoming = read(refs[index + 1]) if index + 1 < len(refs) else None
            yield PENDING, dataset


def _sub_operations(
    core: NodeCore, refs: list[InstanceRef] | None, event: events.Event, fit: Fit = outgoing
) -> Iterator[Any]:
    """What C-GET and C-MOVE yield after their setup: a count, then each dataset."""
    if refs is None:
        yield 0
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    yield len(refs)
    yield from _datasets(core, refs, event, fit)


def _refused() -> Iterator[Any]:
    """What C-GET and C-MOVE yield after their setup for a caller that may not retrieve."""
    yield 1
    yield _not_allowed(), None


def handle_get(
    event: events.Event, core: NodeCore, config: NodeConfig, known: KnownCallers
) -> Iterator[Any]:
    caller = _caller(event)
    if not caller_allowed(event, config, known):
        audit.dicom_operation("C-GET", caller.calling_aet, caller.address, "refused")
        yield from _refused()
        return
    # C-GET sends on the requestor's own association: what it accepted is known here.
    contexts = event.assoc.accepted_contexts
    refs = _requested_instances(core, event.identifier)
    audit.dicom_operation(
        "C-GET", caller.calling_aet, caller.address, "accepted", **_audited_refs(refs)
    )
    yield from _sub_operations(core, refs, event, lambda p10: outgoing(p10, contexts))


def handle_move(
    event: events.Event,
    core: NodeCore,
    config: NodeConfig,
    registry: Registry,
    jobs: JobRegistry,
    known: KnownCallers,
) -> Iterator[Any]:
    """Send what is asked to the destination, as one job in ``/jobs`` (Orthanc lists each
    incoming C-MOVE there, and scripts wait on it)."""
    destination = registry.modality_with_aet(event.move_destination)
    caller = _caller(event)
    if not caller_allowed(event, config, known):
        audit.dicom_operation("C-MOVE", caller.calling_aet, caller.address, "refused")
        yield (destination.host, destination.port) if destination else (None, None)
        yield from _refused()
        return
    aet = config.dicom.aet
    refs = _requested_instances(core, event.identifier)
    audit.dicom_operation(
        "C-MOVE",
        caller.calling_aet,
        caller.address,
        "accepted" if destination else "unknown-destination",
        destination=str(event.move_destination).strip(),
        **_audited_refs(refs),
    )
    job = jobs.track("DicomModalityStore", _move_description(event, aet, refs))
    if destination is None:
        log.warning("C-MOVE to unknown destination %r", event.move_destination)
        jobs.end(job, f"unknown C-MOVE destination {event.move_destination!r}")
        yield None, None
        return
    if not refs:
        # pynetdicom asks for nothing more once it knows there is nothing to send.
        jobs.end(job, "the C-MOVE identifier names nothing to retrieve" if refs is None else None)
    # pynetdicom opens the association to the destination itself; its opening event is
    # where this handler learns it, to send each instance as the destination accepted it.
    store_association: list[Any] = []

    def opened(opening: events.Event) -> None:
        set_nodelay(opening)
        store_association.append(opening.assoc)

    def fit(p10: bytes) -> Dataset:
        return outgoing(p10, store_association[-1].accepted_contexts)

    options = {
        "contexts": contexts_for(refs or []),
        "evt_handlers": [(evt.EVT_CONN_OPEN, opened)],
    }
    try:
        yield destination.host, destination.port, options
        yield from _sub_operations(core, refs, event, fit)
    finally:
        # pynetdicom also drops the generator when the destination cannot be reached or
        # the association breaks: the job must not stay running then.
        if not job.finished.is_set():
            sent_all = sys.exc_info()[0] is None and not event.is_cancelled
            jobs.end(job, None if sent_all else "the C-MOVE did not complete")


def _move_description(
    event: events.Event, aet: str, refs: list[InstanceRef] | None
) -> dict[str, Any]:
    destination = event.move_destination
    return {
        "Description": "C-MOVE SCP",
        "LocalAet": aet,
        "RemoteAet": destination.decode(errors="replace").strip()
        if isinstance(destination, bytes)
        else str(destination).strip(),
        "MoveOriginatorAET": event.assoc.requestor.ae_title.strip(),
        "InstancesCount": len(refs or []),
    }
