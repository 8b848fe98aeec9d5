"""The peering client: protocol v1 over mutual TLS, pinning the server's fingerprint.

Synchronous (``http.client``): replication runs in worker threads, one peer at a
time, and streams ZIPs to and from temporary files.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import ssl
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from peer.identity import normalize_fingerprint
from peer.tls import UntrustedPeer, peer_fingerprint

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_TIMEOUT_S = 120
_UPLOAD_CHUNK = 16 << 20
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
        self._connection: http.client.HTTPSConnection | None = None
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
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        """Send a request on the kept-alive connection (a new one, pinned, when needed).

        A kept connection the peer has meanwhile closed fails at once; the request
        is then sent again once on a fresh connection. Callers read each response
        to its end before the next request.
        """
        for fresh in (self._connection is None, True):
            if fresh:
                self.close()
                self._connection = self._connect()
            connection = self._connection
            assert connection is not None
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh or (body is not None and not isinstance(body, bytes)):
                    raise PeerError(f"{method} {path}: {exc}", transient=True) from exc
        if response.status >= 400:
            detail = response.read()[:500].decode("utf-8", "replace")
            raise PeerError(
                f"{method} {path}: {response.status} {detail}", transient=response.status >= 500
            )
        return response

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

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

        A download cut off is resumed from the bytes already received (HTTP Range).
        """
        document = {"instances": sorted(sop_uids)} if sop_uids else {}
        export = self._json("POST", f"/peer/v1/studies/{study_uid}/export", document)
        path = Path(tempfile.mkstemp(suffix=".zip")[1])
        try:
            for attempt in range(_RESUME_ATTEMPTS):
                try:
                    self._fetch_from(str(export["Export"]), path)
                    break
                except PeerError as exc:
                    if not exc.transient or attempt + 1 == _RESUME_ATTEMPTS:
                        raise
                    log.info(
                        "download of %s cut at %d bytes; resuming", study_uid, path.stat().st_size
                    )
                    time.sleep(min(2**attempt, 10))
            if path.stat().st_size != int(export["Size"]) or _sha256(path) != export["SHA256"]:
                raise PeerError(
                    f"download of {study_uid} does not match its SHA-256", transient=True
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._request("DELETE", f"/peer/v1/exports/{export['Export']}").read()
        return path

    def _fetch_from(self, export_id: str, path: Path) -> None:
        offset = path.stat().st_size
        response = self._request(
            "GET",
            f"/peer/v1/exports/{export_id}",
            headers={"Range": f"bytes={offset}-"} if offset else {},
        )
        if offset and response.status != http.client.PARTIAL_CONTENT:
            offset = 0  # the server sent it whole: start again
        try:
            with open(path, "r+b" if offset else "wb") as handle:
                handle.seek(offset)
                while chunk := response.read(self._throttle.chunk_size(_CHUNK)):
                    handle.write(chunk)
                    self._throttle.spent(len(chunk))
                    self.bytes_received += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            self.close()  # the connection is mid-response: never reuse it
            raise PeerError(f"download cut off: {exc}", transient=True) from exc

    def upload(self, study_uid: str, archive: IO[bytes]) -> dict[str, Any]:
        """Send a study ZIP (open file) in chunks; a cut resumes at the offset the peer has."""
        archive.seek(0)
        hasher = hashlib.sha256()
        while chunk := archive.read(_CHUNK):
            hasher.update(chunk)
        size = archive.tell()
        upload = self._json(
            "POST",
            "/peer/v1/uploads",
            {"Study": study_uid, "Size": size, "SHA256": hasher.hexdigest()},
        )
        path = f"/peer/v1/uploads/{upload['Upload']}"
        offset, failures = 0, 0
        while offset < size:
            archive.seek(offset)
            chunk = archive.read(self._throttle.chunk_size(_UPLOAD_CHUNK))
            try:
                answer = self._json_body("PATCH", path, chunk, {"Upload-Offset": str(offset)})
                offset, failures = int(answer["Offset"]), 0
                self._throttle.spent(len(chunk))
                self.bytes_sent += len(chunk)
            except PeerError as exc:
                failures += 1
                if not exc.transient or failures >= _RESUME_ATTEMPTS:
                    raise
                time.sleep(min(2**failures, 10))
                offset = int(self._json("GET", path)["Offset"])
        return dict(self._json("POST", f"{path}/commit", {}))

    def _json_body(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        response = self._request(
            method, path, body, {**headers, "Content-Type": "application/octet-stream"}
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


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
