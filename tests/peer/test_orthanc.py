"""Replication with a real Orthanc server (Debian's package), both ways."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.server import NodeProcess
from tests.orthanc_server import CREDENTIALS, ORTHANC, OrthancProcess
from tests.peer.test_replication import inventory, sync
from tests.storage.helpers import ct_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(ORTHANC).exists(), reason="Orthanc is not installed"),
]


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancProcess]:
    server = OrthancProcess(tmp_path / "orthanc")
    yield server
    server.stop()


def orthanc_peer_toml(orthanc: OrthancProcess) -> str:
    return (
        f'\n[[peers]]\nname = "legacy"\nkind = "orthanc"\n'
        f'url = "http://127.0.0.1:{orthanc.port}"\n'
        f'username = "{CREDENTIALS[0]}"\npassword = "{CREDENTIALS[1]}"\n'
    )


def test_push_to_and_pull_from_orthanc(tmp_path: Path, orthanc: OrthancProcess) -> None:
    node = NodeProcess(tmp_path / "node", extra_toml=orthanc_peer_toml(orthanc)).start()
    try:
        for index in range(3):
            node.request("POST", "/instances", ct_bytes(index, patient=1))
        orthanc.call("POST", "/instances", ct_bytes(0, patient=2))
        before = node.request("GET", "/peers/legacy/configuration").json()
        assert before["QueuedStudies"] == 1 and before["LastContact"] is None
        result = sync(node, "legacy")
        assert result["State"] == "Success", result
        after = node.request("GET", "/peers/legacy/configuration").json()
        assert after["LastContact"] == after["LastSuccess"]
        # The study pulled after the push is in our feed now; the next push checks it.
        assert after["QueuedStudies"] == 1
        assert result["Content"]["PushedInstances"] == 3
        assert result["Content"]["PulledInstances"] == 1
        assert orthanc.sop_uids() == inventory(node) and len(inventory(node)) == 4
        # Orthanc computes the same resource ids as pacsnode
        assert sorted(orthanc.call("GET", "/studies")) == sorted(  # type: ignore[arg-type]
            node.request("GET", "/studies").json()
        )
        again = sync(node, "legacy")["Content"]
        assert again["PushedInstances"] == 0 and again["PulledInstances"] == 0
        assert node.request("GET", "/peers/legacy/configuration").json()["QueuedStudies"] == 0
    finally:
        node.stop()


def test_orthanc_pushes_to_pacsnode_as_its_peer(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    orthanc = OrthancProcess(tmp_path / "orthanc", peers={"pacs": [f"{node.url}/"]})
    try:
        answer = orthanc.call("POST", "/instances", ct_bytes(0, patient=5))
        assert isinstance(answer, dict)
        orthanc.call("POST", "/peers/pacs/store", answer["ParentStudy"].encode())
        assert inventory(node) == orthanc.sop_uids()
    finally:
        orthanc.stop()
        node.stop()


def test_store_to_an_orthanc_peer(tmp_path: Path, orthanc: OrthancProcess) -> None:
    node = NodeProcess(tmp_path / "node", extra_toml=orthanc_peer_toml(orthanc)).start()
    try:
        ids = node.request("POST", "/instances", ct_bytes(0, patient=3)).json()
        stored = node.request("POST", "/peers/legacy/store", {"Resources": [ids["ID"]]})
        assert stored.json()["State"] == "Success", stored.body
        assert orthanc.sop_uids() == inventory(node)
    finally:
        node.stop()


def test_peers_declared_over_rest_as_in_orthanc(tmp_path: Path, orthanc: OrthancProcess) -> None:
    node = NodeProcess(tmp_path / "node").start()  # no peer in its configuration
    try:
        url = f"http://127.0.0.1:{orthanc.port}"
        body = {"Url": url, "Username": CREDENTIALS[0], "Password": CREDENTIALS[1]}
        assert node.request("PUT", "/peers/legacy", body).status == 200
        assert node.request("GET", "/peers").json() == ["legacy"]
        ids = node.request("POST", "/instances", ct_bytes(0, patient=4)).json()
        stored = node.request("POST", "/peers/legacy/store", ids["ParentPatient"])
        assert stored.json()["State"] == "Success", stored.body
        assert orthanc.sop_uids() == inventory(node)
        bad = node.request("PUT", "/peers/bad", {"Url": "ftp://nowhere"})
        assert bad.status == 400
        assert node.request("DELETE", "/peers/legacy").status == 200
        assert node.request("GET", "/peers/legacy").status == 404
    finally:
        node.stop()


def test_an_orthanc_peer_through_its_own_rest_api(tmp_path: Path, orthanc: OrthancProcess) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        url = f"http://127.0.0.1:{orthanc.port}/"
        as_list = json.dumps([url, *CREDENTIALS])  # Orthanc's list form
        assert node.request("PUT", "/peers/legacy", as_list).status == 200
        system = node.request("GET", "/peers/legacy/system")
        assert system.status == 200 and "Version" in system.json()
        straight = node.request("POST", "/peers/legacy/store-straight", ct_bytes(0, patient=5))
        assert straight.status == 200 and straight.json()["Status"] == "Success"
        assert node.request("GET", "/instances").json() == []  # sent, not stored here
        ids = node.request("POST", "/instances", ct_bytes(1, patient=5)).json()
        body = {"Resources": [ids["ID"]], "Synchronous": False}
        started = node.request("POST", "/peers/legacy/store", body).json()
        job = wait_for_job(node, started["ID"])
        assert job["State"] == "Success" and job["Content"]["Compress"] is False
        assert job["Content"]["Peer"] == [url, CREDENTIALS[0], ""]  # never the password
        assert int(job["Content"]["Size"]) > 0
    finally:
        node.stop()


def wait_for_job(node: NodeProcess, job_id: str) -> dict:
    import time

    for _ in range(200):
        job = node.request("GET", f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
