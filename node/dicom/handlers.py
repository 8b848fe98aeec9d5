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
from pacsnode.node.ids import Level
from pacsnode.node.index import InstanceRef, Origin, OriginKind
from pacsnode.node.registry import Registry
from pacsnode.node.settings import FindSettings

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
        kind=OriginKind.DICOM,
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


def _matches(
    core: NodeCore, identifier: Dataset, limits: FindSettings | None = None
) -> tuple[Level, list[str], list[str]] | None:
    level = query_level(identifier)
    if level is None:
        return None
    constraints, requested = query_of(identifier)
    cap = limits.cap(level is Level.INSTANCE) if limits is not None else None
    return level, core.find(level, constraints, limit=cap), requested


def handle_find(
    event: events.Event, core: NodeCore, limits: FindSettings
) -> Iterator[tuple[int, Dataset | None]]:
    try:
        found = _matches(core, event.identifier, limits)
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
        tags, counts = core.query_answer(resource_id)
        if tags:  # deleted meanwhile otherwise
            yield PENDING, answer(level, tags, requested, counts)


def _instances(core: NodeCore, identifier: Dataset) -> list[InstanceRef] | None:
    found = _matches(core, identifier)
    if found is None:
        return None
    _, ids, _ = found
    return core.instances_of(ids)


def _datasets(
    core: NodeCore, refs: list[InstanceRef], event: events.Event
) -> Iterator[tuple[int, Dataset | None]]:
    for ref in refs:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, core.instance_dataset(ref)


def _sub_operations(
    core: NodeCore, refs: list[InstanceRef] | None, event: events.Event
) -> Iterator[Any]:
    """What C-GET and C-MOVE yield after their setup: a count, then each dataset."""
    if refs is None:
        yield 0
        yield IDENTIFIER_DOES_NOT_MATCH, None
        return
    yield len(refs)
    yield from _datasets(core, refs, event)


def _requested_instances(core: NodeCore, event: events.Event) -> list[InstanceRef] | None:
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
    refs = _requested_instances(core, event)
    options = {
        "contexts": contexts_for(refs or []),
        "evt_handlers": [(evt.EVT_CONN_OPEN, set_nodelay)],
    }
    yield destination.host, destination.port, options
    yield from _sub_operations(core, refs, event)
