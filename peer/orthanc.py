"""Replication with an Orthanc server through its own REST API.

Push sends each instance Orthanc lacks with ``POST /instances``; pull follows
Orthanc's ``/changes`` and downloads ``/instances/{id}/file``. Orthanc answers
``AlreadyStored`` for what it has, and we do the same, so nothing bounces back.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from pacsnode.peer.client import PeerError
from pacsnode.peer.interface import NodeForPeers
from pacsnode.peer.sync import (
    BATCH,
    Page,
    SyncResult,
    follow_feed,
    local_study_changes,
    push_cursor,
)

log = logging.getLogger(__name__)
_TIMEOUT_S = 120


class OrthancClient:
    def __init__(
        self, url: str, username: str | None, password: str | None, ca_file: str | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Orthanc URL must be http(s)://host:port, not {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._context = ssl.create_default_context(cafile=ca_file) if self._https else None
        self._headers: dict[str, str] = {}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=_TIMEOUT_S
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT_S)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            connection.request(method, self._base + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise PeerError(f"Orthanc {method} {path}: {exc}", transient=True) from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise PeerError(
                f"Orthanc {method} {path}: {response.status} {data[:300]!r}",
                transient=response.status >= 500,
            )
        return data

    def json(self, method: str, path: str, document: Any = None) -> Any:
        body = json.dumps(document).encode() if document is not None else None
        try:
            return json.loads(self._call(method, path, body))
        except ValueError as exc:
            raise PeerError(f"Orthanc {method} {path}: not JSON", transient=True) from exc

    def sop_uids_of_study(self, study_uid: str) -> set[str]:
        found = self.json(
            "POST",
            "/tools/find",
            {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        )
        return {str(item["MainDicomTags"].get("SOPInstanceUID")) for item in found}

    def store(self, data: bytes) -> str:
        answer = json.loads(self._call("POST", "/instances", data, "application/dicom"))
        return str(answer.get("Status", ""))

    def changes(self, since: int, limit: int) -> dict[str, Any]:
        return dict(self.json("GET", f"/changes?since={since}&limit={limit}"))

    def instance_file(self, orthanc_id: str) -> bytes:
        return self._call("GET", f"/instances/{orthanc_id}/file")


def send_instances(
    node: NodeForPeers,
    orthanc: OrthancClient,
    study_uid: str,
    sop_uids: set[str],
    result: SyncResult,
) -> None:
    """POST each of those instances to Orthanc; count those it did not have."""
    for _, data in node.instance_files(study_uid, sop_uids):
        if orthanc.store(data) == "Success":
            result.pushed_instances += 1


def push(
    node: NodeForPeers,
    orthanc: OrthancClient,
    peer: str,
    result: SyncResult,
    query: dict[str, str] | None = None,
) -> None:
    def handle(change: tuple[int, str]) -> int:
        seq, study_uid = change
        result.studies_checked += 1
        missing = set(node.inventory(study_uid)) - orthanc.sop_uids_of_study(study_uid)
        send_instances(node, orthanc, study_uid, missing, result)
        return seq

    follow_feed(node, push_cursor(peer), local_study_changes(node, query), handle)


def pull(node: NodeForPeers, orthanc: OrthancClient, peer: str, result: SyncResult) -> None:
    def fetch(cursor: int) -> Page[dict[str, Any]]:
        page = orthanc.changes(cursor, BATCH)
        return list(page["Changes"]), int(page["Last"]), bool(page["Done"])

    def handle(change: dict[str, Any]) -> int:
        if change.get("ChangeType") == "NewInstance":
            try:
                data = orthanc.instance_file(str(change["ID"]))
            except PeerError as exc:
                if exc.transient:
                    raise
                return int(change["Seq"])  # deleted on Orthanc since
            if node.store_p10(data, peer):
                result.pulled_instances += 1
        return int(change["Seq"])

    follow_feed(node, f"{peer}:pull", fetch, handle)


def sync_with_orthanc(
    node: NodeForPeers,
    orthanc: OrthancClient,
    peer: str,
    *,
    do_push: bool,
    do_pull: bool,
    query: dict[str, str] | None = None,
) -> SyncResult:
    result = SyncResult()
    if do_push:
        push(node, orthanc, peer, result, query)
    if do_pull:
        pull(node, orthanc, peer, result)
    log.info(
        "sync with Orthanc %s: pushed %d, pulled %d instances",
        peer,
        result.pushed_instances,
        result.pulled_instances,
    )
    return result
