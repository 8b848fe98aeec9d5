"""``pacsnode serve`` shuts down cleanly on SIGTERM and SIGINT, whatever services it runs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.node.server import NodeProcess, free_port

pytestmark = pytest.mark.e2e  # starts real node processes

PEER = {"Url": "https://127.0.0.1:9", "Fingerprint": "AB-CD", "IntervalSeconds": 3600}


def stopped_by(node: NodeProcess, signal_number: int) -> int:
    assert node.process is not None
    started = time.monotonic()
    node.process.send_signal(signal_number)
    code = node.process.wait(timeout=20)
    assert time.monotonic() - started < 10, "the node took long to stop"
    return code


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_replicator_made_over_rest_does_not_hold_up_the_exit(
    tmp_path: Path, signal_number: int
) -> None:
    node = NodeProcess(tmp_path).start()
    try:
        assert node.request("PUT", "/peers/siteb", PEER).status == 200
        assert node.request("GET", "/peers").json() == ["siteb"]
        assert stopped_by(node, signal_number) == 0
    finally:
        node.stop()
    assert "Traceback" not in node.log.read_text()


def test_configured_peers_and_listener_stop_on_sigterm(tmp_path: Path) -> None:
    peering = free_port()
    toml = f'[peering]\nport = {peering}\n[[peers]]\nname = "siteb"\nfingerprint = "AB-CD"\n'
    node = NodeProcess(tmp_path, extra_toml=toml).start()
    try:
        assert node.request("GET", "/peers").json() == ["siteb"]
        assert stopped_by(node, signal.SIGTERM) == 0
    finally:
        node.stop()
    assert "Traceback" not in node.log.read_text()
