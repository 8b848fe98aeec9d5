"""What a node reports about each peer: studies queued for the next push, last contact."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.node.server import REPO, NodeProcess
from tests.peer.test_replication import linked_sites, sync
from tests.storage.helpers import ct_bytes, to_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def state(node: NodeProcess, peer: str) -> dict:
    answer = node.request("GET", f"/peers/{peer}/configuration")
    assert answer.status == 200, answer.body
    return answer.json()


def queued(node: NodeProcess, peer: str) -> int | None:
    return state(node, peer)["QueuedStudies"]


def peers_lines(node: NodeProcess) -> dict[str, str]:
    shown = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(node.config), "peers"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return {line.split(":")[0]: line for line in shown.stdout.splitlines()}


def mr_bytes(index: int, patient: int) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(ct_bytes(index, patient=patient)))
    dataset.Modality = "MR"
    return to_bytes(dataset)


def test_queued_studies_follow_the_push_cursor_and_the_filter(tmp_path: Path) -> None:
    site_a, site_b = linked_sites(tmp_path, a_peer={"filter": {"Modality": "MR"}, "pull": False})
    # A study turning stable is a change the next push considers again; keep that
    # from happening in the middle of the test.
    with site_a.config.open("a") as config:
        config.write("\n[storage]\nstable_age_s = 3600\n")
    site_a.start()
    site_b.start()
    try:
        b_peer = state(site_a, "siteb")
        # The same site unfiltered, so one node shows both selections side by side.
        everything = {"Url": b_peer["Url"], "Fingerprint": b_peer["Fingerprint"], "Pull": False}
        assert site_a.request("PUT", "/peers/everything", everything).status == 200
        pull_only = {**everything, "Push": False, "Pull": True}
        assert site_a.request("PUT", "/peers/pullonly", pull_only).status == 200
        assert (queued(site_a, "siteb"), queued(site_a, "everything")) == (0, 0)

        for index in range(3):  # one CT study of three instances
            site_a.request("POST", "/instances", ct_bytes(index, patient=1))
        for index in range(2):  # one MR study of two
            site_a.request("POST", "/instances", mr_bytes(index, patient=2))
        assert queued(site_a, "siteb") == 1
        assert queued(site_a, "everything") == 2
        assert queued(site_a, "pullonly") is None
        assert queued(site_b, "sitea") is None  # passive: it pulls on its own cursor

        lines = peers_lines(site_a)
        assert "queued=1 studies" in lines["siteb"]
        assert "queued=2 studies" in lines["everything"]
        assert "queued=- studies" in lines["pullonly"]

        assert sync(site_a, "siteb")["Content"]["PushedInstances"] == 2
        assert (queued(site_a, "siteb"), queued(site_a, "everything")) == (0, 2)
        assert sync(site_a, "everything")["Content"]["PushedInstances"] == 3
        assert queued(site_a, "everything") == 0
        assert "queued=0 studies" in peers_lines(site_a)["everything"]

        site_a.request("POST", "/instances", ct_bytes(3, patient=1))  # CT: filtered out
        assert (queued(site_a, "siteb"), queued(site_a, "everything")) == (0, 1)
    finally:
        site_a.stop()
        site_b.stop()


def test_last_contact_is_recorded_on_both_sides(tmp_path: Path) -> None:
    site_a, site_b = linked_sites(tmp_path)
    site_a.start()
    site_b.start()
    try:
        assert state(site_a, "siteb")["LastContact"] is None
        assert state(site_b, "sitea")["LastContact"] is None
        assert "last-contact=never" in peers_lines(site_b)["sitea"]

        assert sync(site_a, "siteb")["State"] == "Success"
        dialer, dialed = state(site_a, "siteb"), state(site_b, "sitea")
        assert dialer["LastContact"] is not None
        assert dialer["LastContact"] == dialer["LastSuccess"]
        # B never syncs (A is passive to it); it heard from A through its listener.
        assert dialed["LastContact"] is not None and "LastSuccess" not in dialed
        line = peers_lines(site_b)["sitea"]
        assert f"last-contact={dialed['LastContact']}" in line
        assert "last-success=never" in line
    finally:
        site_a.stop()
        site_b.stop()
