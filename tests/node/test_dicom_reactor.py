"""pynetdicom's reactors woken by their work (node/dicom/reactor.py): real associations
on loopback, both ends event-driven, exchanging messages and closing cleanly."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from pacsnode.node.dicom.reactor import IDLE_WAIT_S, install, make_event_driven
from tests.node.server import free_port

pytestmark = pytest.mark.skipif(not install(), reason="a pynetdicom whose reactors poll")


def _event_driven(event: evt.Event) -> None:
    make_event_driven(event.assoc)


@pytest.fixture
def server() -> Iterator[int]:
    port = free_port()
    ae = AE("REACTOR")
    ae.add_supported_context(Verification)
    running = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_CONN_OPEN, _event_driven)]
    )
    yield port
    running.shutdown()


def _associate(port: int) -> object:
    ae = AE("CLIENT")
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="REACTOR", evt_handlers=[(evt.EVT_CONN_OPEN, _event_driven)]
    )
    assert assoc.is_established
    return assoc


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_messages_go_both_ways_without_waiting_for_a_tick(server: int) -> None:
    assoc = _associate(server)
    started = time.perf_counter()
    statuses = [assoc.send_c_echo().Status for _ in range(50)]
    elapsed = time.perf_counter() - started
    assoc.release()
    assert statuses == [0x0000] * 50
    # Each round trip is answered when it arrives, not at the loops' idle tick: fifty of
    # them take far less than fifty ticks (a loose bound: this is no timing benchmark).
    assert elapsed < 50 * IDLE_WAIT_S


def test_associations_close_and_leave_no_descriptors(server: int) -> None:
    _associate(server).release()  # the first one imports and sets up what stays
    before = _open_descriptors()
    for _ in range(10):
        assoc = _associate(server)
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert assoc.is_released
    deadline = time.monotonic() + 5
    while _open_descriptors() > before and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's side closes in its own threads
    assert _open_descriptors() <= before


def test_an_abort_ends_both_reactors(server: int) -> None:
    assoc = _associate(server)
    assoc.abort()
    assert assoc.is_aborted
    assoc.dul.join(timeout=5)
    assert not assoc.dul.is_alive()
