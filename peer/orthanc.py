"""The Orthanc replica client: replication with an Orthanc server through its own REST API.

It implements :class:`pacsnode.peer.replica.ReplicaClient`, so a sync with
Orthanc is the same pass as with a pacsnode:

- changes: Orthanc's ``/changes``, whose ``NewInstance`` entries are mapped to
  their studies, a page at a time (other change types move the cursor and
  nothing else);
- inventory: ``/tools/find`` of the study's instances, with no digests (``""``):
  Orthanc's instances are compared by SOP Instance UID only;
- push: ``POST /instances`` of each instance's DICOM file; pull:
  ``/instances/{id}/file`` of each, stored here one file at a time. Orthanc
  answers ``AlreadyStored`` for what it has, and we do the same, so nothing
  bounces back;
- annotations: a no-op (Orthanc's metadata is not pacsnode's user metadata);
- deletions: :class:`~pacsnode.peer.errors.Unsupported` (the configuration
  refuses ``mirror_deletions`` for an Orthanc peer, so a pass never asks).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from pacsnode.peer.errors import PeerError, PeerRefused, PeerUnreachable, Unsupported
from pacsnode.peer.interface import (
    ChangeBatch,
    DeletionBatch,
    MergeSummary,
    NodeForPeers,
    StudyChange,
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
        #: DICOM file bytes moved so far
        self.bytes_sent = 0
        self.bytes_received = 0

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
            raise PeerUnreachable(f"Orthanc {method} {path}: {exc}") from exc
        finally:
            connection.close()
        if response.status >= 400:
            message = f"Orthanc {method} {path}: {response.status} {data[:300]!r}"
            raise PeerRefused(message, response.status)
        return data

    def json_body(self, method: str, path: str, body: bytes, content_type: str) -> Any:
        """Send ``body`` as it is; the peer's JSON answer."""
        try:
            return json.loads(self._call(method, path, body, content_type))
        except ValueError as exc:
            raise PeerError(f"Orthanc {method} {path}: not JSON", transient=True) from exc

    def json(self, method: str, path: str, document: Any = None) -> Any:
        body = json.dumps(document).encode() if document is not None else None
        try:
            return json.loads(self._call(method, path, body))
        except ValueError as exc:
            raise PeerError(f"Orthanc {method} {path}: not JSON", transient=True) from exc

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own connection."""

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        page = self.json("GET", f"/changes?since={since}&limit={limit}")
        new = [str(c["ID"]) for c in page["Changes"] if c.get("ChangeType") == "NewInstance"]
        studies = self._studies_of_instances(new) if new else []
        if query:
            studies = [uid for uid in studies if self._matches(uid, query)]
        # One lookup per page cannot tell which change brought which study, so each
        # study completes only the cursor the page started from: a pass cut inside
        # the page checks all its studies again (by inventory, nothing moves twice).
        return ChangeBatch(
            [StudyChange(since, uid) for uid in studies], int(page["Last"]), bool(page["Done"])
        )

    def _studies_of_instances(self, orthanc_ids: list[str]) -> list[str]:
        """The Study Instance UIDs of these Orthanc instances (deleted ones are skipped),
        in one request (``/tools/bulk-content``, Orthanc 1.9 and later)."""
        studies = self.json(
            "POST", "/tools/bulk-content", {"Resources": orthanc_ids, "Level": "Study"}
        )
        found = (study.get("MainDicomTags", {}).get("StudyInstanceUID") for study in studies)
        return sorted({str(uid) for uid in found if uid})

    def _matches(self, study_uid: str, query: dict[str, str]) -> bool:
        # At series level a query sees series tags (Modality) and study and patient tags.
        found = self.json(
            "POST",
            "/tools/find",
            {"Level": "Series", "Query": {**query, "StudyInstanceUID": study_uid}, "Limit": 1},
        )
        return bool(found)

    def _instances_of_study(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> Orthanc instance id, for the study's instances."""
        found = self.json(
            "POST",
            "/tools/find",
            {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        )
        return {str(item["MainDicomTags"].get("SOPInstanceUID")): str(item["ID"]) for item in found}

    def inventory(self, study_uid: str, named: Collection[str] | None = None) -> dict[str, str]:
        found = dict.fromkeys(self._instances_of_study(study_uid), "")
        if named is None:
            return found
        return {uid: found[uid] for uid in named if uid in found}

    def store(self, data: bytes) -> str:
        """POST one DICOM file; Orthanc's status (``Success``, ``AlreadyStored``)."""
        answer = json.loads(self._call("POST", "/instances", data, "application/dicom"))
        return str(answer.get("Status", ""))

    def push_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str]
    ) -> MergeSummary:
        summary = MergeSummary(study_uid)
        for sop_uid, data in node.instance_files(study_uid, sop_uids):
            status = self.store(data)
            self.bytes_sent += len(data)
            # Orthanc keeps its own copy of a UID it has (no conflict is reported).
            (summary.added if status == "Success" else summary.already_stored).append(sop_uid)
        return summary

    def pull_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str], peer_name: str
    ) -> MergeSummary:
        summary = MergeSummary(study_uid)
        held = self._instances_of_study(study_uid)
        for sop_uid in sorted(sop_uids & held.keys()):
            try:
                data = self._call("GET", f"/instances/{held[sop_uid]}/file")
            except PeerRefused as exc:
                if exc.status == 404:
                    continue  # deleted on Orthanc since it was listed
                raise
            self.bytes_received += len(data)
            (summary.added if node.store_p10(data, peer_name) else summary.already_stored).append(
                sop_uid
            )
        return summary

    def annotations(self, study_uid: str) -> dict[str, Any]:
        return {}

    def send_annotations(self, study_uid: str, document: dict[str, Any]) -> int:
        return 0

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        raise Unsupported("deletions are not mirrored with Orthanc peers")

    def send_deletions(self, resource_ids: list[str]) -> int:
        raise Unsupported("deletions are not mirrored with Orthanc peers")
