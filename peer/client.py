"""The pacsnode replica client: protocol v1 over mutual TLS, pinning the server's fingerprint.

It implements :class:`pacsnode.peer.replica.ReplicaClient`. Instances move as
archive-direct ZIPs streamed to and from temporary files, in byte ranges over
several connections at once, resumed after a cut with only what is missing.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from pacsnode.peer.chunks import Work, plan_chunks, range_reader, run_chunks, width_for
from pacsnode.peer.connection import PinnedConnections
from pacsnode.peer.digest import size_and_sha256
from pacsnode.peer.errors import PeerError, PeerRefused
from pacsnode.peer.interface import (
    ChangeBatch,
    Deletion,
    DeletionBatch,
    MergeSummary,
    NodeForPeers,
    StudyChange,
)
from pacsnode.peer.ranges import Range, add_range, missing_ranges
from pacsnode.peer.throttle import Throttle

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
#: attempts in a row that move nothing before a transfer gives up (a link that is down)
_RESUME_ATTEMPTS = 8


def _held(missing: list[Range], size: int) -> int:
    """Bytes of a ``size``-byte transfer the receiving side holds."""
    return size - sum(end - start for start, end in missing)


def _resume_delay(stalled: int) -> float:
    """The wait before resuming a cut transfer: short after a cut that followed progress
    (the link was up a moment ago), doubling while attempts move nothing, at most 10 s."""
    return min(0.5 * 2**stalled, 10.0)


class PeerClient:
    def __init__(
        self, url: str, fingerprint: str, context: ssl.SSLContext, bandwidth_kbps: int = 0
    ) -> None:
        self._peer = PinnedConnections(url, fingerprint, context)
        self._throttle = Throttle(bandwidth_kbps)
        self._count_lock = threading.Lock()
        #: ZIP bytes moved so far (for the job's progress and rate)
        self.bytes_sent = 0
        self.bytes_received = 0

    def close(self) -> None:
        self._peer.close()

    def _json(self, method: str, path: str, document: Any = None) -> Any:
        body = json.dumps(document).encode() if document is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        return self._peer.json(method, path, body, headers)

    def hello(self) -> dict[str, Any]:
        return dict(self._json("GET", "/peer/v1/hello"))

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        path = f"/peer/v1/changes?since={since}&limit={limit}"
        if query:
            path += "&query=" + urllib.parse.quote(json.dumps(query))
        page = self._json("GET", path)
        try:
            changes = [
                StudyChange(int(c["Seq"]), str(c["StudyInstanceUID"])) for c in page["Changes"]
            ]
            return ChangeBatch(changes, int(page["Last"]), bool(page["Done"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PeerError(f"GET {path}: unexpected answer: {exc!r}", transient=False) from exc

    def inventory(self, study_uid: str, named: Collection[str] | None = None) -> dict[str, str]:
        path = f"/peer/v1/studies/{study_uid}/inventory"
        if named is None:
            return dict(self._json("GET", path)["Instances"])
        if not named:
            return {}
        try:
            return dict(self._json("POST", path, {"Instances": sorted(named)})["Instances"])
        except PeerRefused as exc:
            if exc.status != 405:
                raise
        # A node from before named inventories: it still answers the whole one.
        return dict(self._json("GET", path)["Instances"])

    def push_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str]
    ) -> MergeSummary:
        if not sop_uids:  # an empty ZIP would be refused; nothing to send is nothing sent
            return MergeSummary(study_uid)
        with node.open_study_zip(study_uid, sop_uids) as archive:
            answer = self.upload(study_uid, archive)
        return MergeSummary(
            study_uid,
            list(answer.get("Added", [])),
            list(answer.get("AlreadyStored", [])),
            list(answer.get("Conflicts", [])),
        )

    def pull_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str], peer_name: str
    ) -> MergeSummary:
        if not sop_uids:  # download() takes no instances to mean the whole study
            return MergeSummary(study_uid)
        path = self.download(study_uid, sop_uids)
        if path is None:
            return MergeSummary(study_uid)
        try:
            return node.merge_study(path, peer_name)
        finally:
            path.unlink(missing_ok=True)

    def annotations(self, study_uid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/peer/v1/studies/{study_uid}/annotations"))

    def send_annotations(self, study_uid: str, document: dict[str, Any]) -> int:
        answer = self._json("POST", f"/peer/v1/studies/{study_uid}/annotations", document)
        return int(answer.get("Added", 0))

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        path = f"/peer/v1/deletions?since={since}&limit={limit}"
        page = self._json("GET", path)
        try:
            found = [
                Deletion(int(d["Seq"]), str(d["ID"]), str(d["Level"])) for d in page["Deletions"]
            ]
            return DeletionBatch(found, int(page["Last"]), bool(page["Done"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PeerError(f"GET {path}: unexpected answer: {exc!r}", transient=False) from exc

    def send_deletions(self, resource_ids: list[str]) -> int:
        return int(self._json("POST", "/peer/v1/deletions", {"IDs": resource_ids})["Deleted"])

    def download(self, study_uid: str, sop_uids: set[str] | None) -> Path | None:
        """Fetch the study (or those instances) into a temp file, checked by SHA-256;
        ``None`` when the peer does not hold the study (any more).

        Ranges of the ZIP come over several connections at once (HTTP Range); after
        a cut, only the ranges not yet received are asked for again.
        """
        document = {"instances": sorted(sop_uids)} if sop_uids else {}
        try:
            export = self._json("POST", f"/peer/v1/studies/{study_uid}/export", document)
        except PeerRefused as exc:
            if exc.status == 404:
                return None
            raise
        size, export_path = int(export["Size"]), f"/peer/v1/exports/{export['Export']}"
        descriptor, name = tempfile.mkstemp(suffix=".zip")
        path = Path(name)
        received: list[Range] = []
        try:
            with os.fdopen(descriptor, "r+b") as handle:
                handle.truncate(size)
                fetch = self._range_fetcher(export_path, handle.fileno(), received)
                stalled = 0  # attempts in a row that received nothing
                while missing := missing_ranges(received, size):
                    held = _held(missing, size)
                    try:
                        self._run_chunks(plan_chunks(missing, size, self._throttle), fetch)
                    except PeerError as exc:
                        # A cut after which more had arrived does not count: a long
                        # download over a link that keeps dropping gets through, where
                        # giving up would start it again from zero.
                        progress = _held(missing_ranges(received, size), size) > held
                        stalled = 0 if progress else stalled + 1
                        if not exc.transient or stalled >= _RESUME_ATTEMPTS:
                            raise
                        log.info("download of %s cut (%s); asking for the rest", study_uid, exc)
                        time.sleep(_resume_delay(stalled))
                complete = not missing_ranges(received, size)
                if not complete or size_and_sha256(handle)[1] != export["SHA256"]:
                    raise PeerError(
                        f"download of {study_uid} does not match its SHA-256", transient=True
                    )
        except BaseException:
            path.unlink(missing_ok=True)
            self._abandon(export_path)
            raise
        # Dropping the export is the peer's housekeeping: the download is whole and
        # checked, and a link cut here must not throw it away (the sweep drops it).
        self._abandon(export_path)
        return path

    def _range_fetcher(self, export_path: str, descriptor: int, received: list[Range]) -> Work:
        """GET ``[start, end)`` of the export on ``channel`` into the file; what arrived
        before a cut is kept in ``received``."""

        def fetch(channel: int, start: int, end: int) -> None:
            response = self._peer.request(
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
                self._peer.close_channel(channel)  # mid-response: never reuse it
                raise PeerError(f"download cut off: {exc}", transient=True) from exc
            finally:
                with self._count_lock:
                    received[:] = add_range(received, start, position)

        return fetch

    def upload(self, study_uid: str, archive: IO[bytes]) -> dict[str, Any]:
        """Send a study ZIP (an open file) in chunks, several connections at once.

        After a cut, the peer says which ranges it lacks and only those are sent.
        Answers the peer's merge summary (``Added``, ``AlreadyStored``, ``Conflicts``).
        """
        size, digest = size_and_sha256(archive)
        upload = self._json(
            "POST", "/peer/v1/uploads", {"Study": study_uid, "Size": size, "SHA256": digest}
        )
        path = f"/peer/v1/uploads/{upload['Upload']}"
        try:
            return self._send_upload(study_uid, path, archive, size)
        except BaseException:
            self._abandon(path)
            raise

    def _abandon(self, path: str) -> None:
        """Drop an upload or export we are done with or give up on: the peer counts them
        against our quota; if this fails too, the peer's sweep removes it later."""
        try:
            self._peer.request("DELETE", path).read()
        except (PeerError, OSError, http.client.HTTPException) as exc:
            log.info("could not abandon %s: %s", path, exc)

    def _send_upload(
        self, study_uid: str, path: str, archive: IO[bytes], size: int
    ) -> dict[str, Any]:
        missing: list[Range] = [(0, size)] if size else []
        stalled = 0  # attempts in a row after which the peer held nothing more
        sender = self._chunk_sender(path, archive)
        while missing:
            held = _held(missing, size)
            cut: PeerError | None = None
            try:
                self._run_chunks(plan_chunks(missing, size, self._throttle), sender)
            except PeerError as exc:
                if not exc.transient:
                    raise
                log.info("upload of %s cut (%s); sending what is missing", study_uid, exc)
                cut = exc
                # The peer notes what arrived of a chunk once it sees the cut: asked at
                # once, it would still call those bytes missing.
                time.sleep(_resume_delay(stalled))
            # What the peer lacks now: it keeps what arrived, also of the chunks cut off;
            # sending again all that was missing before this attempt would start over.
            while True:
                try:
                    missing = self._missing_of_upload(path)
                    break
                except PeerError as exc:
                    stalled += 1  # the link is still down
                    if not exc.transient or stalled >= _RESUME_ATTEMPTS:
                        raise
                    time.sleep(_resume_delay(stalled))
            # A cut after which the peer held more does not count (see download).
            stalled = 0 if _held(missing, size) > held else stalled + 1
            if stalled >= _RESUME_ATTEMPTS:
                raise cut or PeerError(f"upload of {study_uid} still incomplete", transient=True)
        return dict(self._json("POST", f"{path}/commit", {}))

    def _missing_of_upload(self, path: str) -> list[Range]:
        return [(int(a), int(b)) for a, b in self._json("GET", path)["Missing"]]

    def _chunk_sender(self, path: str, archive: IO[bytes]) -> Work:
        read = range_reader(archive)

        def send(channel: int, start: int, end: int) -> None:
            data = read(start, end)
            headers = {"Upload-Offset": str(start), "Content-Type": "application/octet-stream"}
            self._peer.json("PATCH", path, data, headers, channel)
            self._throttle.spent(len(data))
            with self._count_lock:
                self.bytes_sent += len(data)

        return send

    def _run_chunks(self, chunks: list[Range], work: Work) -> None:
        width = width_for(chunks, self._throttle)
        self._peer.widen(width)
        run_chunks(chunks, width, work)
