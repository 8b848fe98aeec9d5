"""Who may associate with the node's DICOM port, and how many at once (issue 13, items 1
and 5), against a real node. Loopback's 127.0.0.0/8 gives distinct source addresses: a
modality configured at 127.0.0.5 and strangers at 127.0.0.2.. are told apart as on a LAN."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.node.server import NodeProcess

pytestmark = pytest.mark.e2e  # starts real node processes

MODALITY_HOST = "127.0.0.5"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("exposure"))
    process.config.write_text(
        f'data_dir = "data"\n[http]\nport = {process.http_port}\n'
        f'[dicom]\naet = "NODE"\nport = {process.dicom_port}\n'
        "accept_unknown_callers = false\ncheck_called_aet = true\ncheck_caller_host = true\n"
        "association_request_timeout_s = 1\n"
        f'[[modalities]]\nname = "ct"\naet = "CT1"\nhost = "{MODALITY_HOST}"\nport = 1\n'
    )
    process.start()
    yield process
    process.stop()


def associate(node: NodeProcess, calling: str, called: str = "NODE", source: str = MODALITY_HOST):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", node.dicom_port, ae_title=called, bind_address=(source, 0))


def echoes(node: NodeProcess, calling: str = "CT1", **kwargs: str) -> bool:
    association = associate(node, calling, **kwargs)
    if not association.is_established:
        return False
    status = association.send_c_echo()
    association.release()
    return bool(status) and status.Status == 0


def rejection(node: NodeProcess, calling: str, **kwargs: str) -> int | None:
    """The A-ASSOCIATE-RJ diagnostic, None when accepted."""
    association = associate(node, calling, **kwargs)
    if association.is_established:
        association.release()
        return None
    assert association.is_rejected
    return int(association.acceptor.primitive.diagnostic)


def bare(source: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def audit_lines(node: NodeProcess) -> list[dict[str, object]]:
    path = node.directory / "data" / "audit" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_bare_connections_do_not_lock_out_a_modality(node: NodeProcess) -> None:
    # 40 connections that never associate, from ten addresses (4 each, within the
    # per-address cap): before, 32 of them took every slot for ~30 s
    held = [bare(f"127.0.0.{10 + i % 10}", node.dicom_port) for i in range(40)]
    try:
        started = time.monotonic()
        assert echoes(node), "the modality was locked out"
        assert time.monotonic() - started < 5
    finally:
        for connection in held:
            connection.close()


def test_one_address_gets_at_most_its_share(node: NodeProcess) -> None:
    held = [bare("127.0.0.30", node.dicom_port) for _ in range(8)]  # the per-address default
    try:
        extra = bare("127.0.0.30", node.dicom_port)
        extra.settimeout(3)
        assert extra.recv(1) == b"", "the ninth connection from one address stayed open"
        extra.close()
    finally:
        for connection in held:
            connection.close()


def closed_after(connection: socket.socket, limit_s: float) -> float:
    """Seconds until the node closed the connection (whatever it sent first)."""
    connection.settimeout(limit_s)
    started = time.monotonic()
    try:
        while connection.recv(1024):
            pass
    except ConnectionResetError:
        pass
    finally:
        connection.close()
    return time.monotonic() - started


def test_a_connection_that_never_associates_is_closed_soon(node: NodeProcess) -> None:
    silent = bare("127.0.0.40", node.dicom_port)
    half = bare("127.0.0.41", node.dicom_port)
    half.sendall(b"\x01\x00\x00\x00\x01\x00")  # an A-ASSOCIATE-RQ header promising 256 bytes
    # the deadline is 1 s here (pynetdicom alone: 30 s, and a half-sent PDU never);
    # a socket.timeout (TimeoutError) here means the node kept it open
    assert closed_after(silent, 8) < 4
    assert closed_after(half, 8) < 4


def test_a_refused_caller_that_stays_connected_is_dropped_soon(node: NodeProcess) -> None:
    from pynetdicom.tests.encoded_pdu_items import a_associate_rq  # calls "ANY-SCP"

    connection = bare("127.0.0.42", node.dicom_port)
    connection.sendall(a_associate_rq)
    connection.settimeout(8)
    assert connection.recv(1)[0] == 0x03  # an A-ASSOCIATE-RJ, then the client stays
    # the refusal keeps the short deadline (not pynetdicom's 30 s ACSE timeout)
    assert closed_after(connection, 8) < 4


def test_callers_are_matched_by_host_and_called_title(node: NodeProcess) -> None:
    assert rejection(node, "CT1") is None
    assert rejection(node, "CT1", source="127.0.0.6") == 0x03  # the right title, another host
    assert rejection(node, "STRANGER") == 0x03
    assert rejection(node, "CT1", called="SOMEONE") == 0x07  # called AE title not recognized
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        refused = [e for e in audit_lines(node) if e.get("action") == "dicom-associate"]
        if len(refused) >= 3:
            break
        time.sleep(0.1)
    assert {(e["aet"], e["address"]) for e in refused} >= {
        ("CT1", "127.0.0.6"),
        ("STRANGER", MODALITY_HOST),
    }
    assert all(e["outcome"] == "refused" and e["reason"] for e in refused)


def test_serve_says_what_dicom_exposes(node: NodeProcess) -> None:
    log = Path(node.log).read_text()
    assert "DICOM NODE on 127.0.0.1" in log and "only the configured modalities" in log
    assert "caller host checked: yes; called AE title checked: yes" in log
