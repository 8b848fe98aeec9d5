"""A TCP proxy on loopback that cuts connections mid-body, to test resumable transfers.

TLS passes through untouched (the proxy only copies bytes), so the peers still
see each other's pinned certificates.
"""

from __future__ import annotations

import select
import socket
import threading

from tests.node.server import free_port


class _Forwarder:
    """Forward each connection to ``target_port``, byte for byte; a subclass says after
    each chunk forwarded whether to cut that connection there."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
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
        connection = self._new_connection()
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
                    direction = "up" if source is client else "down"
                    if self._cut_now(direction, len(data), connection):
                        return
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def _new_connection(self) -> dict[str, int]:
        """What a subclass counts for one connection."""
        return {}

    def _cut_now(self, direction: str, size: int, connection: dict[str, int]) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


class CuttingProxy(_Forwarder):
    """Forward to ``target_port``; the first ``cuts`` connections that carry more than
    ``cut_after`` bytes in the watched direction are closed right there."""

    def __init__(
        self, target_port: int, cut_after: int, cuts: int, *, upstream: bool = False
    ) -> None:
        self._cut_after = cut_after
        self._cuts_left = cuts
        self._watched = "up" if upstream else "down"
        self.cuts_made = 0
        super().__init__(target_port)

    def _new_connection(self) -> dict[str, int]:
        return {"watched": 0}

    def _cut_now(self, direction: str, size: int, connection: dict[str, int]) -> bool:
        if direction != self._watched:
            return False
        connection["watched"] += size
        return connection["watched"] > self._cut_after and self._take_cut()

    def _take_cut(self) -> bool:
        with self._guard:
            if self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            self.cuts_made += 1
            return True


class FlakyLink(_Forwarder):
    """Forward to ``target_port``, cutting connections on a schedule: while cuts are
    ``armed``, a connection is closed as soon as the bytes it carried in the watched
    direction (``"up"``: client to server, ``"down"``, or ``"both"``) since the last cut
    pass the next offset of the schedule; each cut takes the next offset, so the cuts
    come one after another, each after the link carried that much again. It counts
    every byte it forwarded each way, to tell a resumed transfer from one started again."""

    def __init__(self, target_port: int) -> None:
        self._offsets: list[int] = []
        self._watch = "both"
        self._epoch = 0  # cuts made so far: counting starts again after each
        #: (direction watched, offset) of each cut made, in order
        self.cuts: list[tuple[str, int]] = []
        self.forwarded = {"up": 0, "down": 0}
        super().__init__(target_port)

    def arm(self, offsets: list[int], watch: str) -> None:
        """Cut at these offsets from now on (and count afresh)."""
        with self._guard:
            self._offsets, self._watch = list(offsets), watch
            self.forwarded = {"up": 0, "down": 0}

    @property
    def armed(self) -> int:
        with self._guard:
            return len(self._offsets)

    def _new_connection(self) -> dict[str, int]:
        return {"up": 0, "down": 0, "epoch": self._epoch}

    def _cut_now(self, direction: str, size: int, carried: dict[str, int]) -> bool:
        with self._guard:
            carried[direction] += size
            self.forwarded[direction] += size
            if carried["epoch"] != self._epoch:  # a cut since: count from then
                carried.update(up=0, down=0, epoch=self._epoch)
                carried[direction] = size
            if not self._offsets:
                return False
            up_and_down = carried["up"] + carried["down"]
            watched = up_and_down if self._watch == "both" else carried[self._watch]
            if (self._watch in ("both", direction)) and watched > self._offsets[0]:
                self.cuts.append((self._watch, self._offsets.pop(0)))
                self._epoch += 1
                return True
            return False
