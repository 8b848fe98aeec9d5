"""The peering client: protocol v1 over mutual TLS, pinning the server's fingerprint.

Synchronous (``http.client``): replication runs in worker threads, one peer at a
time, and streams ZIPs to and from temporary files.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import queue
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pacsnode.peer.identity import normalize_fingerprint
from pacsnode.peer.ranges import Range, add_range, missing_ranges, split_range
from pacsnode.peer.tls import UntrustedPeer, peer_fingerprint

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_TIMEOUT_S = 120
_UPLOAD_CHUNK = 16 << 20
_MIN_PARALLEL_CHUNK = 1 << 20
_PARALLEL = 4  # connections per transfer
_RESUME_ATTEMPTS = 8


class PeerError(Exception):
    """The peer answered with an error, or the transfer failed; ``transient`` says retry."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class PeerClient:
    def __init__(
        self, url: str, fingerprint: str, context: ssl.SSLContext, bandwidth_kbps: int = 0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"peer URL must be https://host:port, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 443
        self._fingerprint = normalize_fingerprint(fingerprint)
        self._context = context
        self._throttle = Throttle(bandwidth_kbps)
        #: kept-alive connections; 0 serves every call, the others only parallel chunks
        self._connections: list[http.client.HTTPSConnection | None] = [None]
        self._count_lock = threading.Lock()
        #: ZIP bytes moved so far (for the job's progress and rate)
        self.bytes_sent = 0
        self.bytes_received = 0

    def _connect(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=_TIMEOUT_S
        )
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            raise PeerError(
                f"cannot reach {self._host}:{self._port}: {exc}", transient=True
            ) from exc
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

    def _request(
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
                self._close(channel)
                self._connections[channel] = self._connect()
            connection = self._connections[channel]
            assert connection is not None
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._close(channel)
                if fresh or (body is not None and not isinstance(body, bytes)):
                    raise PeerError(f"{method} {path}: {exc}", transient=True) from exc
        if response.status >= 400:
            detail = response.read()[:500].decode("utf-8", "replace")
            raise PeerError(
                f"{method} {path}: {response.status} {detail}", transient=response.status >= 500
            )
        return response

    def _close(self, channel: int) -> None:
        connection = self._connections[channel]
        if connection is not None:
            connection.close()
            self._connections[channel] = None

    def close(self) -> None:
        for channel in range(len(self._connections)):
            self._close(channel)

    def _json(self, method: str, path: str, document: Any = None) -> Any:
        body = json.dumps(document).encode() if document is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self._request(method, path, body, headers)
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise PeerError(f"{method} {path}: bad answer: {exc}", transient=True) from exc

    def hello(self) -> dict[str, Any]:
        return dict(self._json("GET", "/peer/v1/hello"))

    def changes(
        self, since: int, limit: int = 500, query: dict[str, str] | None = None
    ) -> dict[str, Any]:
        path = f"/peer/v1/changes?since={since}&limit={limit}"
        if query:
            path += "&query=" + urllib.parse.quote(json.dumps(query))
        return dict(self._json("GET", path))

    def annotations(self, study_uid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/peer/v1/studies/{study_uid}/annotations"))

    def send_annotations(self, study_uid: str, document: dict[str, Any]) -> int:
        answer = self._json("POST", f"/peer/v1/studies/{study_uid}/annotations", document)
        return int(answer.get("Added", 0))

    def deletions(self, since: int, limit: int = 500) -> dict[str, Any]:
        return dict(self._json("GET", f"/peer/v1/deletions?since={since}&limit={limit}"))

    def send_deletions(self, resource_ids: list[str]) -> int:
        return int(self._json("POST", "/peer/v1/deletions", {"IDs": resource_ids})["Deleted"])

    def inventory(self, study_uid: str) -> dict[str, str]:
        return dict(self._json("GET", f"/peer/v1/studies/{study_uid}/inventory")["Instances"])

    def download(self, study_uid: str, sop_uids: set[str] | None) -> Path:
        """Fetch the study (or those instances) into a temp file, checked by SHA-256.

        Ranges of the ZIP come over several connections at once (HTTP Range); after
        a cut, only the ranges not yet received are asked for again.
        """
        document = {"instances": sorted(sop_uids)} if sop_uids else {}
        export = self._json("POST", f"/peer/v1/studies/{study_uid}/export", document)
        size, export_path = int(export["Size"]), f"/peer/v1/exports/{export['Export']}"
        descriptor, name = tempfile.mkstemp(suffix=".zip")
        path = Path(name)
        received: list[Range] = []
        try:
            with os.fdopen(descriptor, "r+b") as handle:
                handle.truncate(size)
                fetch = self._range_fetcher(export_path, handle.fileno(), received)
                for attempt in range(1, _RESUME_ATTEMPTS + 1):
                    missing = missing_ranges(received, size)
                    if not missing:
                        break
                    try:
                        self._run_chunks(self._chunks(missing, size), fetch)
                    except PeerError as exc:
                        if not exc.transient or attempt == _RESUME_ATTEMPTS:
                            raise
                        log.info("download of %s cut (%s); asking for the rest", study_uid, exc)
                        time.sleep(min(2**attempt, 10))
            if missing_ranges(received, size) or _sha256(path) != export["SHA256"]:
                raise PeerError(
                    f"download of {study_uid} does not match its SHA-256", transient=True
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._request("DELETE", export_path).read()
        return path

    def _range_fetcher(
        self, export_path: str, descriptor: int, received: list[Range]
    ) -> Callable[[int, int, int], None]:
        """GET ``[start, end)`` of the export on ``channel`` into the file; what arrived
        before a cut is kept in ``received``."""

        def fetch(channel: int, start: int, end: int) -> None:
            response = self._request(
                "GET", export_path, headers={"Range": f"bytes={start}-{end - 1}"}, channel=channel
            )
            if response.status != http.client.PARTIAL_CONTENT and start > 0:
                response.read()
                raise PeerError(f"{export_path}: the peer ignored Range", transient=False)
            position = start
            try:
                while position < end:
                    piece = response.read(min(_CHUNK, end - position))
                    if not piece:
                        raise http.client.IncompleteRead(b"", end - position)
                    position += os.pwrite(descriptor, piece, position)
                    self._throttle.spent(len(piece))
                    with self._count_lock:
                        self.bytes_received += len(piece)
                response.read()  # a server answering 200 sends the rest: drain it
            except (OSError, http.client.HTTPException) as exc:
                self._close(channel)  # the connection is mid-response: never reuse it
                raise PeerError(f"download cut off: {exc}", transient=True) from exc
            finally:
                with self._count_lock:
                    received[:] = add_range(received, start, position)

        return fetch

    def upload(self, study_uid: str, archive: IO[bytes]) -> dict[str, Any]:
        """Send a study ZIP (an open file) in chunks, several connections at once.

        One TCP connection cannot fill a long link (its window grows slowly and
        stays capped), so chunks go over up to ``_PARALLEL`` connections at once.
        After a cut, the peer says which ranges it lacks and only those are sent.
        """
        size, digest = _size_and_sha256(archive)
        upload = self._json(
            "POST", "/peer/v1/uploads", {"Study": study_uid, "Size": size, "SHA256": digest}
        )
        path = f"/peer/v1/uploads/{upload['Upload']}"
        missing: list[Range] = [(0, size)] if size else []
        for attempt in range(1, _RESUME_ATTEMPTS + 1):
            try:
                self._run_chunks(self._chunks(missing, size), self._chunk_sender(path, archive))
                missing = [(int(a), int(b)) for a, b in self._json("GET", path)["Missing"]]
            except PeerError as exc:
                if not exc.transient or attempt == _RESUME_ATTEMPTS:
                    raise
                log.info("upload of %s cut (%s); sending what is missing", study_uid, exc)
                time.sleep(min(2**attempt, 10))
                continue
            if not missing:
                return dict(self._json("POST", f"{path}/commit", {}))
        raise PeerError(f"upload of {study_uid} still incomplete", transient=True)

    def _chunk_sender(self, path: str, archive: IO[bytes]) -> Callable[[int, int, int], None]:
        read = _range_reader(archive)

        def send(channel: int, start: int, end: int) -> None:
            data = read(start, end)
            self._json_body("PATCH", path, data, {"Upload-Offset": str(start)}, channel)
            self._throttle.spent(len(data))
            with self._count_lock:
                self.bytes_sent += len(data)

        return send

    def _chunks(self, missing: list[Range], size: int) -> list[Range]:
        if self._throttle.limited:
            chunk = self._throttle.chunk_size(_UPLOAD_CHUNK)
        else:  # about two chunks per connection, so a slow one does not hold the end back
            share = -(-size // (2 * _PARALLEL))
            chunk = min(_UPLOAD_CHUNK, max(_MIN_PARALLEL_CHUNK, share))
        return [piece for gap in missing for piece in split_range(*gap, chunk)]

    def _run_chunks(self, chunks: list[Range], work: Callable[[int, int, int], None]) -> None:
        """``work(channel, start, end)`` for every chunk, over up to ``_PARALLEL``
        connections; the first failure is raised once the other workers stop."""
        width = 1 if self._throttle.limited else min(_PARALLEL, len(chunks))
        while len(self._connections) < width:
            self._connections.append(None)
        pending: queue.SimpleQueue[Range] = queue.SimpleQueue()
        for chunk in chunks:
            pending.put(chunk)
        failures: list[PeerError] = []

        def worker(channel: int) -> None:
            while not failures:
                try:
                    start, end = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    work(channel, start, end)
                except PeerError as exc:
                    failures.append(exc)

        if width <= 1:
            worker(0)
        else:
            with ThreadPoolExecutor(width, thread_name_prefix="peer-transfer") as workers:
                list(workers.map(worker, range(width)))
        if failures:
            raise failures[0]

    def _json_body(
        self, method: str, path: str, body: bytes, headers: dict[str, str], channel: int = 0
    ) -> Any:
        response = self._request(
            method, path, body, {**headers, "Content-Type": "application/octet-stream"}, channel
        )
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise PeerError(f"{method} {path}: bad answer: {exc}", transient=True) from exc


class Throttle:
    """Keeps a transfer under ``kbps`` kilobits per second (0: unlimited)."""

    def __init__(self, kbps: int) -> None:
        self._bytes_per_s = kbps * 1000 / 8
        self._start = time.monotonic()
        self._sent = 0

    @property
    def limited(self) -> bool:
        return bool(self._bytes_per_s)

    def chunk_size(self, largest: int) -> int:
        if not self._bytes_per_s:
            return largest
        return max(4096, min(largest, int(self._bytes_per_s / 4)))  # about 4 chunks a second

    def spent(self, count: int) -> None:
        if not self._bytes_per_s:
            return
        self._sent += count
        ahead = self._sent / self._bytes_per_s - (time.monotonic() - self._start)
        if ahead > 0:
            time.sleep(ahead)


def _range_reader(archive: IO[bytes]) -> Callable[[int, int], bytes]:
    """Read ``[start, end)`` of ``archive`` from any thread."""
    try:
        descriptor = archive.fileno()
    except (OSError, ValueError):  # in memory: one reader at a time
        lock = threading.Lock()

        def read_locked(start: int, end: int) -> bytes:
            with lock:
                archive.seek(start)
                return archive.read(end - start)

        return read_locked
    return lambda start, end: os.pread(descriptor, end - start, start)


def _size_and_sha256(archive: IO[bytes]) -> tuple[int, str]:
    archive.seek(0)
    hasher = hashlib.sha256()
    while chunk := archive.read(_CHUNK):
        hasher.update(chunk)
    return archive.tell(), hasher.hexdigest()


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return _size_and_sha256(handle)[1]
