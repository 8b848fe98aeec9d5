"""A TCP proxy on loopback that cuts connections mid-body, to test resumable transfers.

TLS passes through untouched (the proxy only copies bytes), so the peers still
see each other's pinned certificates.
"""

from __future__ import annotations

import select
import socket
import threading

from tests.node.server import free_port


class CuttingProxy:
    """Forward to ``target_port``; the first ``cuts`` connections that carry more than
    ``cut_after`` bytes in the watched direction are closed right there."""

    def __init__(
        self, target_port: int, cut_after: int, cuts: int, *, upstream: bool = False
    ) -> None:
        self.port = free_port()
        self._target = target_port
        self._cut_after = cut_after
        self._cuts_left = cuts
        self._upstream = upstream
        self.cuts_made = 0
        self._guard = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        watched = 0
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 30)
                if not ready:
                    return
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (server if source is client else client).sendall(data)
                    if (source is client) == self._upstream:
                        watched += len(data)
                        if watched > self._cut_after and self._take_cut():
                            return
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def _take_cut(self) -> bool:
        with self._guard:
            if self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            self.cuts_made += 1
            return True

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
