"""One function per DIMSE event, bound to the node core, returning DIMSE statuses.

C-FIND, C-MOVE and C-GET handlers are generators, as pynetdicom expects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import events, evt

from pacsnode.node.core import NodeCore
from pacsnode.node.dicom.network import contexts_for, set_nodelay
from pacsnode.node.dicom.query import answer, query_level, query_of
from pacsnode.node.errors import DomainError
from pacsnode.node.find import tags_with_ancestors
from pacsnode.node.hierarchy import Origin, instances_under
from pacsnode.node.ids import Level
from pacsnode.node.index import Txn
from pacsnode.node.registry import Registry

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
UNABLE_TO_PROCESS = 0xC000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNKNOWN_MOVE_DESTINATION = 0xA801


def handle_echo(event: events.Event) -> int:
    return SUCCESS


def handle_store(event: events.Event, core: NodeCore, aet: str) -> int | Dataset:
    requestor = event.assoc.requestor
    origin = Origin(
        kind="DicomProtocol",
        remote_aet=requestor.ae_title.strip(),
        called_aet=aet,
        remote_ip=requestor.address,
    )
    try:
        core.ingest(event.encoded_dataset(include_meta=True), origin)
    except DomainError as exc:
        log.warning("C-STORE from %s refused: %s", origin.remote_aet, exc.message)
        status = Dataset()
        status.Status = exc.dimse_status
        status.ErrorComment = exc.message[:64]
        return status
    except Exception:
        log.exception("C-STORE from %s failed", origin.remote_aet)
        return UNABLE_TO_PROCESS
    return SUCCESS


def _matches(core: NodeCore, identifier: Dataset) -> tuple[Level, list[str], list[str]] | None:
    level = query_level(identifier)
    if level is None:
        return None
    constraints, requested = query_of(identifier)
    return level, core.find(level, constraints), requested


def _answer_parts(txn: Txn, resource_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """One read per match: the tags it answers with and its related-object counts."""
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
        counts["NumberOfPatientRelatedStudies"] = len(txn.children(resource_id))
    return tags_with_ancestors(txn, record), counts


def handle_find(event: events.Event, core: NodeCore) -> Iterator[tuple[int, Dataset | None]]:
    try:
        found = _matches(core, event.identifier)
    except DomainError as exc:
        log.warning("C-FIND refused: %s", exc.message)
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    if found is None:
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    level, ids, requested = found
    for resource_id in ids:
        if event.is_cancelled:
            yield CANCEL, None
            return
        tags, counts = core.read(lambda txn, rid=resource_id: _answer_parts(txn, rid))
        if tags:  # deleted meanwhile otherwise
            yield PENDING, answer(level, tags, requested, counts)


def _instances(core: NodeCore, identifier: Dataset) -> list[dict[str, Any]] | None:
    found = _matches(core, identifier)
    if found is None:
        return None
    _, ids, _ = found
    records: list[dict[str, Any]] = []
    for resource_id in ids:
        records.extend(core.read(lambda txn, rid=resource_id: instances_under(txn, rid)))
    return records


def _datasets(
    core: NodeCore, records: list[dict[str, Any]], event: events.Event
) -> Iterator[tuple[int, Dataset | None]]:
    for record in records:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield (
            PENDING,
            core.store.instance_dataset(
                record["study_uid"], record["series_uid"], record["sop_uid"]
            ),
        )


def _sub_operations(
    core: NodeCore, records: list[dict[str, Any]] | None, event: events.Event
) -> Iterator[Any]:
    """What C-GET and C-MOVE yield after their setup: a count, then each dataset."""
    if records is None:
        yield 0
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    yield len(records)
    yield from _datasets(core, records, event)


def _requested_instances(core: NodeCore, event: events.Event) -> list[dict[str, Any]] | None:
    try:
        return _instances(core, event.identifier)
    except DomainError:
        return None


def handle_get(event: events.Event, core: NodeCore) -> Iterator[Any]:
    yield from _sub_operations(core, _requested_instances(core, event), event)


def handle_move(event: events.Event, core: NodeCore, registry: Registry) -> Iterator[Any]:
    # Resolved per request: a modality added over REST is a destination at once.
    destination = registry.modality_with_aet(event.move_destination)
    if destination is None:
        log.warning("C-MOVE to unknown destination %r", event.move_destination)
        yield None, None
        return
    records = _requested_instances(core, event)
    options = {
        "contexts": contexts_for(core, records or []),
        "evt_handlers": [(evt.EVT_CONN_OPEN, set_nodelay)],
    }
    yield destination.host, destination.port, options
    yield from _sub_operations(core, records, event)
