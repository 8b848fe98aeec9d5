"""The audit log (issue 13, item 11): its writer as plain functions, and against a real
node: REST requests by user, failed logins, C-STORE and refused C-FIND by AE title and
address, deletions, with patient ids hashed."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacsnode.node import audit
from pacsnode.node.settings import (
    AuditSettings,
    CoreSettings,
    DicomSettings,
    HttpSettings,
    NodeConfig,
)
from tests.node.server import DCMTK_ENV, NodeProcess
from tests.storage.helpers import ct_bytes

PASSWORD_HASH = (
    "scrypt$16384$8$1$ifrKldRNSU9EgGRShMQ8AQ==$LpcH4akrwbVJBb-uvB4asRXVC5abGZUVuB0tVbwV9MlEBYYA9"
    "AtiIVaj9BnDBJoHDGTUUaYUefGORb7e5O9xmA=="
)  # "orthanctest"


def config_in(directory: Path, **settings: Any) -> NodeConfig:
    return NodeConfig(
        CoreSettings(directory), HttpSettings(), DicomSettings(), audit=AuditSettings(**settings)
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_patient_ids_are_a_keyed_hash(tmp_path: Path) -> None:
    key = audit.key_for(tmp_path)
    assert stat.S_IMODE((tmp_path / audit.KEY_FILE).stat().st_mode) == 0o600
    assert audit.key_for(tmp_path) == key  # made once, kept
    hashed = audit.patient_hasher(key)("PAT-123")
    assert hashed.startswith("hmac:") and "PAT-123" not in hashed
    assert hashed == audit.patient_hasher(key)("PAT-123")  # one patient, one token
    assert hashed != audit.patient_hasher(b"another key")("PAT-123")  # no dictionary without it


def test_events_are_json_lines_written_off_the_caller_and_rotated(tmp_path: Path) -> None:
    stop = audit.start(config_in(tmp_path, max_size_mb=1, backup_count=2))
    try:
        for number in range(6000):  # ~1.3 MB: one rotation
            audit.dicom_store("CT1", "10.0.0.5", f"1.2.{number}", "1.2.3", "PAT-123", "Success")
    finally:
        stop()
    path = audit.log_path(config_in(tmp_path))
    assert path.with_name("audit.log.1").exists()
    event = lines(path)[-1]
    assert event["action"] == "dicom-c-store" and event["aet"] == "CT1"
    assert event["address"] == "10.0.0.5" and event["outcome"] == "Success"
    assert event["sop_instance_uid"] == "1.2.5999" and event["time"].endswith("+00:00")
    assert event["patient"].startswith("hmac:")
    assert "PAT-123" not in path.read_text()


def test_patient_ids_in_clear_when_configured(tmp_path: Path) -> None:
    stop = audit.start(config_in(tmp_path, hash_patient_ids=False))
    try:
        audit.dicom_operation("C-FIND", "CT1", "10.0.0.5", "accepted", query={"PatientID": "P1"})
    finally:
        stop()
    event = lines(audit.log_path(config_in(tmp_path)))[-1]
    assert event["query"] == {"PatientID": "P1"}


def test_nothing_is_built_until_started(tmp_path: Path) -> None:
    audit.login_failed("x", "1.2.3.4")  # no writer: a no-op, no file
    assert not (tmp_path / "audit").exists()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("audit"), credentials=("alice", "orthanctest"))
    process.config.write_text(
        f'data_dir = "data"\n[http]\nport = {process.http_port}\n'
        f'[dicom]\naet = "NODE"\nport = {process.dicom_port}\n'
        "accept_unknown_callers = false\nalways_allow_store = true\n"
        f'[[users]]\nname = "alice"\npassword_hash = "{PASSWORD_HASH}"\n'
    )
    process.start()
    yield process
    process.stop()


def events_of(
    node: NodeProcess, action: str, until: Callable[[dict[str, Any]], bool] = lambda _: True
) -> list[dict[str, Any]]:
    """The node's events of one kind, once one satisfies ``until``."""
    path = node.directory / "data" / "audit" / "audit.log"
    deadline = time.monotonic() + 10  # written by the node's writer thread
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [e for e in lines(path) if e["action"] == action] if path.exists() else []
        if any(until(event) for event in found):
            break
        time.sleep(0.1)
    return found


@pytest.mark.e2e
def test_a_node_leaves_a_trail(node: NodeProcess, tmp_path: Path) -> None:
    token = base64.b64encode(b"alice:wrong").decode()
    wrong = {"Authorization": f"Basic {token}"}
    assert node.request("GET", "/system", auth=False, headers=wrong).status == 401
    sample = tmp_path / "ct.dcm"
    sample.write_bytes(ct_bytes(0, patient=4242))
    stored = subprocess.run(
        ["/usr/bin/storescu", "-aet", "CT1", "-aec", "NODE", "127.0.0.1",
         str(node.dicom_port), str(sample)],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=60,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    subprocess.run(
        ["/usr/bin/findscu", "-S", "-aet", "STRANGER", "-aec", "NODE", "-k",
         "QueryRetrieveLevel=STUDY", "-k", "PatientID=4242", "127.0.0.1", str(node.dicom_port)],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=60,
    )  # fmt: skip
    study = node.request("GET", "/studies").json()[0]
    patient_id = node.request("GET", f"/studies/{study}").json()["PatientMainDicomTags"][
        "PatientID"
    ]
    assert node.request("DELETE", f"/studies/{study}").status == 200

    failed = events_of(node, "rest-login")[-1]
    assert failed["user"] == "alice" and failed["outcome"] == "failed"
    assert failed["address"] == "127.0.0.1"
    store = events_of(node, "dicom-c-store")[-1]
    assert store["aet"] == "CT1" and store["address"] == "127.0.0.1"
    assert store["outcome"] == "Success" and store["sop_instance_uid"]
    assert store["patient"].startswith("hmac:")
    find = events_of(node, "dicom-c-find")[-1]
    assert find["aet"] == "STRANGER" and find["outcome"] == "refused"
    deletion = events_of(node, "delete")[-1]
    assert deletion["user"] == "alice" and deletion["resource"] == study
    requests = events_of(node, "rest-request", lambda event: event["method"] == "DELETE")
    assert {"user": "alice", "method": "DELETE", "outcome": "200"}.items() <= requests[-1].items()
    assert f'"{patient_id}"' not in (node.directory / "data" / "audit" / "audit.log").read_text()
