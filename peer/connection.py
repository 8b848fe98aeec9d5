"""Kept-alive HTTPS connections to one peer, each checked against its pinned fingerprint.

Synchronous (``http.client``): replication runs in worker threads. Channel 0
serves every call; the others only carry the parallel chunks of a transfer.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from pacsnode.peer.errors import PeerError, PeerRefused, PeerUnreachable, UntrustedPeer
from pacsnode.peer.identity import normalize_fingerprint
from pacsnode.peer.tls import peer_fingerprint

log = logging.getLogger(__name__)
_TIMEOUT_S = 120


class PinnedConnections:
    def __init__(self, url: str, fingerprint: str, context: ssl.SSLContext) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"peer URL must be https://host:port, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 443
        self._fingerprint = normalize_fingerprint(fingerprint)
        self._context = context
        self._connections: list[http.client.HTTPSConnection | None] = [None]

    def widen(self, width: int) -> None:
        """Make channels ``0..width-1`` usable (connected on first use)."""
        while len(self._connections) < width:
            self._connections.append(None)

    def _connect(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=_TIMEOUT_S
        )
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            raise PeerUnreachable(f"cannot reach {self._host}:{self._port}: {exc}") from exc
        seen = peer_fingerprint(connection.sock)  # type: ignore[arg-type]
        if seen is None or normalize_fingerprint(seen) != self._fingerprint:
            connection.close()
            log.warning(
                "peer %s:%d presented certificate %s, not the pinned one",
                self._host,
                self._port,
                seen,
            )
            raise UntrustedPeer(f"{self._host}:{self._port} presented certificate {seen}", seen)
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        channel: int = 0,
    ) -> http.client.HTTPResponse:
        """Send a request on a kept-alive connection (a new one, pinned, when needed).

        A kept connection the peer has meanwhile closed fails at once; the request
        is then sent again once on a fresh connection. Callers read each response
        to its end before the next request on that ``channel``.
        """
        for fresh in (self._connections[channel] is None, True):
            if fresh:
                self.close_channel(channel)
                self._connections[channel] = self._connect()
            connection = self._connections[channel]
            assert connection is not None
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close_channel(channel)
                # A body read from a stream cannot be sent again.
                if fresh or (body is not None and not isinstance(body, bytes)):
                    raise PeerUnreachable(f"{method} {path}: {exc}") from exc
        if response.status >= 400:
            detail = response.read()[:500].decode("utf-8", "replace")
            raise PeerRefused(f"{method} {path}: {response.status} {detail}", response.status)
        return response

    def json(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        channel: int = 0,
    ) -> Any:
        """The JSON answer of a request; an answer cut short or not JSON is transient."""
        response = self.request(method, path, body, headers, channel)
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise PeerError(f"{method} {path}: bad answer: {exc}", transient=True) from exc

    def close_channel(self, channel: int) -> None:
        connection = self._connections[channel]
        if connection is not None:
            connection.close()
            self._connections[channel] = None

    def close(self) -> None:
        for channel in range(len(self._connections)):
            self.close_channel(channel)
