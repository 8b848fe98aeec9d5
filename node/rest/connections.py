"""The REST listener's guard against slow and piled-up connections (slow-loris).

aiohttp has no deadline for receiving a request: a client that sends half a request line
and then one byte a minute keeps its connection, and its file descriptor, as long as it
likes. :class:`GuardedRunner` wraps aiohttp's protocol factory (what ``TCPSite`` hands to
``loop.create_server``) so that each connection is watched:

- at most ``max_connections`` are open at once; one more is answered 503 and closed;
- the first request's head (line and headers) must arrive within ``head_timeout_s`` of
  the connection opening; later heads on a kept-alive connection are bounded by aiohttp's
  keep-alive timer, which closes a connection still waiting for a complete head;
- with TLS the guard runs the handshake itself (``loop.start_tls``), so a connection is
  counted and on the clock from its first byte: asyncio's own handshake would keep it
  out of sight for up to a minute;
- a request body may stall (the node is waiting to read and no byte comes) for at most
  ``body_timeout_s``; a body the node is not reading yet (flow control paused the socket)
  never counts as stalled.

One sweep task checks all connections a few times a second; the decision is the pure
function :func:`overdue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    head_timeout_s: float = 20.0
    body_timeout_s: float = 60.0

    @property
    def sweep_s(self) -> float:
        """How often connections are checked: a fraction of the shortest deadline."""
        return min(1.0, max(0.05, min(self.head_timeout_s, self.body_timeout_s) / 4))


@dataclass
class ConnectionState:
    opened_at: float
    last_data_at: float
    heads: int = 0  # requests whose head arrived
    payload: Any = None  # the body of the newest request (an aiohttp StreamReader)


def overdue(
    state: ConnectionState, now: float, limits: ConnectionLimits, reading: bool
) -> str | None:
    """Why a connection should be closed now, or None. ``reading``: the socket is being
    read (not paused because the node has not consumed what it already received)."""
    if state.heads == 0 and now - state.opened_at > limits.head_timeout_s:
        return "no complete request head in time"
    body_pending = state.payload is not None and not state.payload.is_eof()
    if body_pending and reading and now - state.last_data_at > limits.body_timeout_s:
        return "request body stalled"
    return None


def connection_cap(configured: int, open_files_soft: int) -> int:
    """The connection cap used: the configured one, but at most half the open-file limit
    (the rest is for the index, study files, DICOM and peers); at least 16."""
    if open_files_soft <= 0:  # RLIM_INFINITY
        return configured
    return max(16, min(configured, open_files_soft // 2))


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard watching it."""

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        now = guard.loop.time()
        self.guard = guard
        self.inner: RequestHandler | None = inner
        self.state = ConnectionState(now, now)
        self.transport: asyncio.Transport | None = None
        self.connected = False  # aiohttp's protocol has its transport (after any handshake)
        self._early: list[bytes] = []  # data decrypted before the handshake task resumed
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            self.inner = None
            if self.guard.tls is None:
                transport.write(_BUSY)
            transport.close()
            return
        if self.guard.tls is None:
            self._connect(transport)
        else:
            transport.pause_reading()  # no ClientHello may reach us before start_tls runs
            self._handshake = self.guard.loop.create_task(self._start_tls(transport))

    async def _start_tls(self, raw: asyncio.Transport) -> None:
        tls = self.guard.tls
        assert tls is not None
        try:
            secure = await self.guard.loop.start_tls(
                raw,
                self,
                tls,
                server_side=True,
                ssl_handshake_timeout=self.guard.limits.head_timeout_s,
            )
        except OSError:  # a failed or timed-out handshake (ssl.SSLError, ConnectionError)
            # asyncio tells no protocol of a connection lost during its handshake.
            self.guard.release(self)
            raw.abort()
            return
        if secure is None or self.inner is None or secure.is_closing():
            self.guard.release(self)
            return
        self.transport = secure
        self._connect(secure)

    def _connect(self, transport: asyncio.Transport) -> None:
        assert self.inner is not None
        self.connected = True
        self.inner.connection_made(transport)
        for data in self._early:
            self.inner.data_received(data)
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        self.state.last_data_at = self.guard.loop.time()
        if self.connected and self.inner is not None:
            self.inner.data_received(data)
        elif self.inner is not None:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.connected and self.inner else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        if self.connected and self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.connected and self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.connected and self.inner is not None:
            self.inner.resume_writing()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"


class ConnectionGuard:
    """The open connections of one REST listener, and the sweep that closes laggards."""

    def __init__(self, limits: ConnectionLimits, tls: ssl.SSLContext | None = None) -> None:
        self.limits = limits
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self._open: dict[RequestHandler, _GuardedProtocol] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, protocol: _GuardedProtocol) -> bool:
        if len(self._open) >= self.limits.max_connections:
            log.warning(
                "REST connection from %s refused: %d connections open (http.max_connections)",
                protocol.peer(),
                len(self._open),
            )
            return False
        assert protocol.inner is not None
        self._open[protocol.inner] = protocol
        return True

    def release(self, protocol: _GuardedProtocol) -> None:
        if protocol.inner is not None:
            self._open.pop(protocol.inner, None)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, server())

    def watch_requests(self, factory: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap aiohttp's request factory, called once per request whose head arrived."""

        def make_request(message: Any, payload: Any, protocol: Any, *rest: Any) -> Any:
            guarded = self._open.get(protocol)
            if guarded is not None:
                guarded.state.heads += 1
                guarded.state.payload = payload
            return factory(message, payload, protocol, *rest)

        return make_request

    def start(self) -> None:
        self._sweeper = self.loop.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_s)
            try:
                self._close_overdue(self.loop.time())
            except Exception:  # the guard must outlive any one connection's oddity
                log.exception("REST connection sweep failed")

    def _close_overdue(self, now: float) -> None:
        for protocol in list(self._open.values()):
            transport = protocol.transport
            if transport is None or transport.is_closing():
                continue
            reason = overdue(protocol.state, now, self.limits, transport.is_reading())
            if reason is not None:
                log.warning("REST connection from %s closed: %s", protocol.peer(), reason)
                transport.abort()  # nothing worth flushing; frees the descriptor now


class GuardedRunner(web.AppRunner):
    """An AppRunner whose sites accept connections through a :class:`ConnectionGuard`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Set before any connection: each connection's handler copies it when made.
        server.request_factory = self.guard.watch_requests(server.request_factory)
        return server

    @property
    def server(self) -> Any:  # what TCPSite gives to loop.create_server
        inner = super().server
        return None if inner is None else self.guard.protocol_factory(inner)
