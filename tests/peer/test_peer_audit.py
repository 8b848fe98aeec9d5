"""Peering leaves a trail in both nodes' audit logs (issue 13, item 11): the syncing node
logs the sync pass, the serving node each peer request by peer name and address, and a
certificate that is not pinned as refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacsnode.peer.identity import load_or_create
from tests.node.server import NodeProcess
from tests.peer.test_peer_hardening import Peer
from tests.peer.test_replication import sync
from tests.peer.test_replication import two_sites as two_sites  # a fixture, re-exported
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def audit_events(
    node: NodeProcess,
    action: str,
    until_count: int = 1,
    wanted: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> list[dict[str, Any]]:
    """The node's events of one kind that are ``wanted``, once there are ``until_count``
    (the node's writer thread writes them a few times a second)."""
    path = node.directory / "data" / "audit" / "audit.log"
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(found) < until_count:
        time.sleep(0.1)
        if path.exists():
            events = [json.loads(line) for line in path.read_text().splitlines()]
            found = [e for e in events if e["action"] == action and wanted(e)]
    return found


def test_syncs_and_peer_requests_are_audited(
    two_sites: tuple[NodeProcess, NodeProcess, str, str],
    tmp_path: Path,
) -> None:
    site_a, site_b, _, _ = two_sites
    site_a.request("POST", "/instances", ct_bytes(0, patient=1))
    assert sync(site_a, "siteb")["State"] == "Success"
    passes = audit_events(site_a, "peer-sync")
    assert passes and passes[-1]["peer"] == "siteb" and passes[-1]["outcome"] == "done"
    assert passes[-1]["pushed"] == 1
    audit_events(site_b, "peer-request", wanted=lambda event: event["method"] == "POST")
    served = audit_events(site_b, "peer-request", 2)
    assert {event["peer"] for event in served} == {"sitea"}
    assert all(event["address"] == "127.0.0.1" for event in served)
    assert any(event["method"] == "POST" and event["outcome"] == "200" for event in served)

    stranger = Peer(load_or_create(tmp_path / "stranger"), _peering_port(site_b))
    assert stranger.call("GET", "/peer/v1/hello")[0] == 403
    refused = audit_events(site_b, "peer-request", wanted=lambda event: event["peer"] == "")
    assert refused and refused[-1]["outcome"] == "403" and refused[-1]["path"] == "/peer/v1/hello"


def _peering_port(node: NodeProcess) -> int:
    text = node.config.read_text()
    section = text[text.index("[peering]") :]
    return int(section.split("port = ", 1)[1].split("\n", 1)[0])
