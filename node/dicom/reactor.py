"""pynetdicom's two reactor loops, woken by what they wait for instead of polling.

Each association runs two threads that poll: the DUL reactor sleeps 1 ms whenever it
found nothing to do (no data on the socket, nothing to send), and the association
reactor sleeps 1 ms before each look at its queues. A DIMSE exchange crosses both
several times, so every message waited for sleeps to end: one C-ECHO round trip took
3.3 ms on loopback, most of the time a small C-STORE spends in the node's DICOM layer.

Here each sleep of those two loops becomes a wait that ends as soon as there is work:

* the DUL waits on its socket and on a wake-up socket pair, written to when the
  association puts a primitive to send on the DUL's queue, or asks it to stop;
* the association reactor waits on an event set when the DUL hands it a PDU or a
  DIMSE message, or when another thread wants it paused.

Waits are bounded (:data:`IDLE_WAIT_S`) so the loops still look at their timers (ARTIM,
idle, kill flags) as they did, at a coarser tick. pynetdicom calls ``time.sleep`` from its
module globals, so :func:`install` gives its ``dul`` and ``association`` modules a
``time`` whose ``sleep`` knows these two loops and otherwise is ``time.sleep``; an
association takes part once :func:`make_event_driven` has given it its wake-ups (at
connection open). Associations without them, and pynetdicom versions this was not made
against, keep pynetdicom's own polling.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pynetdicom
from pynetdicom import association, dul
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

log = logging.getLogger(__name__)

#: the pynetdicom releases whose reactors this module knows (their loops and queues)
SUPPORTED_VERSIONS = ("3.0.",)
#: the longest wait before a loop looks at its timers and flags again (pynetdicom: 1 ms)
IDLE_WAIT_S = 0.02
#: the sleep of pynetdicom's association reactor loop, told apart from its other sleeps
_ASSOCIATION_TICK_S = 0.001
_real_sleep = time.sleep
_installed = False
_install_lock = threading.Lock()


class _Wakeups:
    """One association's wake-ups: a socket pair for its DUL thread (which also waits
    on the network socket, so it needs a file descriptor) and an event for its reactor."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.reactor_work = threading.Event()
        self.closed = False

    def wake_dul(self) -> None:
        with contextlib.suppress(OSError):  # a full pair is awake already; a closed one is done
            self.writer.send(b"\0")

    def wake_reactor(self) -> None:
        self.reactor_work.set()

    def wait_dul(self, network: socket.socket | None, timeout: float) -> None:
        watched: list[Any] = [self.reader] if network is None else [self.reader, network]
        try:
            ready, _, _ = select.select(watched, [], [], timeout)
        except (OSError, ValueError):  # the network socket was closed meanwhile
            _real_sleep(min(timeout, _ASSOCIATION_TICK_S))
            return
        if self.reader in ready:
            with contextlib.suppress(OSError):
                self.reader.recv(4096)

    def wait_reactor(self, timeout: float) -> None:
        self.reactor_work.wait(timeout)
        # Cleared before the reactor looks at its queues: work put after this is seen
        # by that look or sets the event for the next wait.
        self.reactor_work.clear()

    def close(self) -> None:
        self.closed = True
        self.reader.close()
        self.writer.close()


def _sleep(seconds: float) -> None:
    """``time.sleep`` for pynetdicom's dul and association modules."""
    thread = threading.current_thread()
    wakeups: _Wakeups | None = getattr(thread, "_pacsnode_wakeups", None)
    if wakeups is None or wakeups.closed:
        _real_sleep(seconds)
    elif isinstance(thread, DULServiceProvider):
        if seconds != thread._run_loop_delay or sys._getframe(1).f_code.co_name != "run_reactor":
            _real_sleep(seconds)
            return
        network = getattr(thread.socket, "socket", None)
        if isinstance(network, ssl.SSLSocket) and network.pending():
            return  # decrypted data already buffered, which select() does not see
        wakeups.wait_dul(network, IDLE_WAIT_S)
    elif (
        isinstance(thread, Association)
        and seconds == _ASSOCIATION_TICK_S
        and sys._getframe(1).f_code.co_name == "_run_reactor"
    ):
        wakeups.wait_reactor(IDLE_WAIT_S)
    else:
        _real_sleep(seconds)


class _Clock(types.ModuleType):
    """The ``time`` module as pynetdicom's reactors see it: ``sleep`` is :func:`_sleep`."""

    def __init__(self) -> None:
        super().__init__("time")
        self.sleep = _sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def install() -> bool:
    """Give pynetdicom's reactor modules the waking ``sleep`` (once); False when this
    pynetdicom is not a version whose reactors this module knows."""
    global _installed
    with _install_lock:
        if _installed:
            return True
        if not pynetdicom.__version__.startswith(SUPPORTED_VERSIONS):
            log.info("pynetdicom %s: its reactors keep polling", pynetdicom.__version__)
            return False
        clock = _Clock()
        dul.time = clock  # type: ignore[attr-defined]
        association.time = clock  # type: ignore[attr-defined]
        _installed = True
        return True


def _after(method: Callable[..., Any], then: Callable[[], None]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            then()

    return wrapped


def make_event_driven(assoc: Association) -> None:
    """Give one association its wake-ups (called when its connection opens, before its
    reactor serves anything). The queues and calls that mean work for a loop wake it."""
    if not install():
        return
    wakeups = _Wakeups()
    provider = assoc.dul
    # The DUL has something to send, or is asked to stop.
    provider.to_provider_queue.put = _after(  # type: ignore[method-assign]
        provider.to_provider_queue.put, wakeups.wake_dul
    )
    provider.kill_dul = _after(provider.kill_dul, wakeups.wake_dul)  # type: ignore[method-assign]
    provider.stop_dul = _after(provider.stop_dul, wakeups.wake_dul)  # type: ignore[method-assign]
    # The reactor has a DIMSE message or an ACSE primitive to look at, or is to pause.
    assoc.dimse.msg_queue.put = _after(  # type: ignore[method-assign]
        assoc.dimse.msg_queue.put, wakeups.wake_reactor
    )
    provider.to_user_queue.put = _after(  # type: ignore[method-assign]
        provider.to_user_queue.put, wakeups.wake_reactor
    )
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear = _after(checkpoint.clear, wakeups.wake_reactor)  # type: ignore[method-assign]
    assoc.kill = _after(assoc.kill, wakeups.wake_reactor)  # type: ignore[method-assign]
    provider._pacsnode_wakeups = wakeups  # type: ignore[attr-defined]
    assoc._pacsnode_wakeups = wakeups  # type: ignore[attr-defined]
    assoc.bind(pynetdicom.evt.EVT_CONN_CLOSE, lambda _event: wakeups.close())
