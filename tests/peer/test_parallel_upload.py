"""Uploads whose chunks arrive out of order, as parallel connections deliver them."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pacsnode.peer.identity import load_or_create
from pacsnode.peer.ranges import add_range, contiguous_prefix, missing_ranges, split_range
from pacsnode.peer.tls import client_context
from pacsnode.storage.store import StudyStore
from tests.node.server import NodeProcess
from tests.peer.test_replication import inventory, linked_sites
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def test_ranges_merge_and_report_gaps() -> None:
    ranges = add_range([], 10, 20)
    ranges = add_range(ranges, 30, 40)
    assert missing_ranges(ranges, 50) == [(0, 10), (20, 30), (40, 50)]
    assert contiguous_prefix(ranges) == 0
    ranges = add_range(ranges, 0, 10)
    ranges = add_range(ranges, 15, 35)  # overlaps both neighbours
    assert ranges == [(0, 40)] and contiguous_prefix(ranges) == 40
    assert missing_ranges(ranges, 40) == []
    assert add_range(ranges, 5, 5) == ranges  # nothing arrived
    assert split_range(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]


class PeerConnection:
    """Protocol v1 calls with site A's client certificate."""

    def __init__(self, tmp_path: Path, site_b: NodeProcess) -> None:
        identity = load_or_create(tmp_path / "a" / "data" / "identity")
        port = int(site_b.config.read_text().split("[peering]\nport = ")[1].split()[0])
        self.connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=client_context(identity)
        )

    def call(self, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, Any]:
        self.connection.request(method, path, body=body or None, headers=headers)
        answer = self.connection.getresponse()
        return answer.status, json.loads(answer.read())


def study_zip(tmp_path: Path) -> tuple[str, bytes]:
    archive = io.BytesIO()
    with StudyStore(tmp_path / "sender-store") as store:
        for index in range(3):
            study_uid = store.put_instance(ct_bytes(index, patient=7)).instance.study_uid
        store.write_study_subset(study_uid, None, archive)
    return study_uid, archive.getvalue()


def test_chunks_in_any_order_then_commit(tmp_path: Path) -> None:
    _, site_b = linked_sites(tmp_path)
    site_b.start()
    try:
        check_out_of_order_upload(tmp_path, site_b)
    finally:
        site_b.stop()


def check_out_of_order_upload(tmp_path: Path, site_b: NodeProcess) -> None:
    study_uid, data = study_zip(tmp_path)
    peer = PeerConnection(tmp_path, site_b)
    start = {"Study": study_uid, "Size": len(data), "SHA256": hashlib.sha256(data).hexdigest()}
    status, answer = peer.call("POST", "/peer/v1/uploads", json.dumps(start).encode())
    assert status == 200 and answer["Missing"] == [[0, len(data)]]
    path = f"/peer/v1/uploads/{answer['Upload']}"
    half = len(data) // 2

    status, answer = peer.call("PATCH", path, data[half:], **{"Upload-Offset": str(half)})
    assert status == 200 and answer == {"Offset": 0, "Missing": [[0, half]]}
    status, answer = peer.call("POST", f"{path}/commit", b"{}")
    assert status == 409 and answer["ErrorCode"] == "upload-incomplete"
    assert inventory(site_b) == set()

    status, answer = peer.call("PATCH", path, data[:10], **{"Upload-Offset": str(len(data))})
    assert status == 400 and answer["ErrorCode"] == "too-long"
    status, answer = peer.call("PATCH", path, b"", **{"Upload-Offset": str(len(data) + 1)})
    assert status == 409

    status, answer = peer.call("PATCH", path, data[:half], **{"Upload-Offset": "0"})
    assert status == 200 and answer == {"Offset": len(data), "Missing": []}
    status, answer = peer.call("GET", path)
    assert answer == {"Offset": len(data), "Missing": []}
    status, answer = peer.call("POST", f"{path}/commit", b"{}")
    assert status == 200 and len(answer["Added"]) == 3
    assert len(inventory(site_b)) == 3
