"""``/modalities`` (C-ECHO, C-STORE to a DCMTK storescp) and ``/jobs``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_bytes


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, received = free_port(), tmp_path / "received"
    received.mkdir()
    process = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DEST", "-od", str(received), str(port)], env=DCMTK_ENV
    )
    time.sleep(0.3)
    yield port, received
    process.terminate()
    process.wait()


def test_modality_crud(node_process: NodeProcess) -> None:
    assert node_process.request("GET", "/modalities").json() == []
    body = {"AET": "VIEWER", "Host": "127.0.0.1", "Port": 104}
    assert node_process.request("PUT", "/modalities/viewer", body).status == 200
    assert node_process.request("GET", "/modalities/viewer").json() == body
    assert node_process.request("GET", "/modalities?expand").json() == {"viewer": body}
    bad = node_process.request("PUT", "/modalities/x", {"AET": "X", "Host": "h", "Port": 0})
    assert bad.status == 400 and "Port" in bad.json()["Message"]
    assert node_process.request("DELETE", "/modalities/viewer").status == 200
    assert node_process.request("GET", "/modalities/viewer").status == 404


def test_echo_and_store_to_a_storescp(
    node_process: NodeProcess, storescp: tuple[int, Path]
) -> None:
    port, received = storescp
    body = {"AET": "DEST", "Host": "127.0.0.1", "Port": port}
    node_process.request("PUT", "/modalities/dest", body)
    assert node_process.request("POST", "/modalities/dest/echo", b"").status == 200
    ids = [node_process.request("POST", "/instances", ct_bytes(i)).json() for i in range(3)]
    study = ids[0]["ParentStudy"]

    done = node_process.request("POST", "/modalities/dest/store", study)
    assert done.status == 200, done.body
    assert done.json()["State"] == "Success" and done.json()["Content"]["Instances"] == 3
    assert len(list(received.iterdir())) == 3

    queued = node_process.request(
        "POST", "/modalities/dest/store", {"Resources": [ids[0]["ID"]], "Asynchronous": True}
    ).json()
    deadline = time.monotonic() + 20
    while node_process.request("GET", queued["Path"]).json()["State"] != "Success":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert queued["ID"] in node_process.request("GET", "/jobs").json()


def test_unreachable_modality(node_process: NodeProcess) -> None:
    node_process.request(
        "PUT", "/modalities/gone", {"AET": "GONE", "Host": "127.0.0.1", "Port": free_port()}
    )
    failed = node_process.request("POST", "/modalities/gone/echo", b"")
    assert failed.status == 502 and failed.json()["ErrorCode"] == "dicom-network-error"
    upload = node_process.request("POST", "/instances", ct_bytes(0)).json()
    job = node_process.request("POST", "/modalities/gone/store", upload["ID"])
    assert job.status == 502 and job.json()["State"] == "Failure"
    assert node_process.request("POST", "/modalities/nobody/echo", b"").status == 404
