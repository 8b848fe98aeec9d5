"""``/modalities`` (C-ECHO, C-STORE to a DCMTK storescp) and ``/jobs`` of a real node.

Their shapes and errors are tested in-process (tests/node/rest/test_modalities.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


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
