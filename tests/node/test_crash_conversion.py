"""SIGKILL of a real ``pacsnode serve`` while acknowledged instances wait for their
background conversion (node/conversion.py, storage/received.py).

Two clients store CT slices over DICOM, each file in its own association, and the node
is killed as soon as a received file is seen on disk without its conversion (one worker
process converts them, ``ingest_workers = 1``). Then the data directory is opened here
(start-up recovery, as ``serve`` runs it) and checked: every acknowledged instance is
there with the very data set sent, converted (no received file left, every digest a
content digest), still with the origin it came with, and ``verify`` finds nothing. The
next ``serve`` serves them.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import pytest

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.settings import CoreSettings
from pacsnode.node.verify import verify
from pacsnode.storage.layout import RECEIVED_SUFFIX, STAGED_SUFFIX, TEMP_SUFFIX
from pacsnode.storage.received import is_received_digest
from tests.node.server import NodeProcess

pytestmark = pytest.mark.e2e  # real node processes, killed

ROUNDS = 3
STORESCU = "/usr/bin/storescu"


def data_set_sha256(p10_bytes: bytes) -> str:
    """SHA-256 of a P10 file's data set, after its file meta (which the receiver of a
    C-STORE writes itself): the group length at offset 140 says where that ends."""
    assert p10_bytes[128:132] == b"DICM" and p10_bytes[132:136] == b"\x02\x00\x00\x00"
    meta_end = 144 + int.from_bytes(p10_bytes[140:144], "little")
    return hashlib.sha256(p10_bytes[meta_end:]).hexdigest()


def received_files(data_dir: Path) -> list[Path]:
    """Received files not converted yet (a converted one has its staging ZIP beside it,
    both kept until the seal)."""
    return [
        path
        for path in (data_dir / "studies").glob(f"*/*/staging/*{RECEIVED_SUFFIX}")
        if not path.with_suffix(STAGED_SUFFIX).exists()
    ]


class Sender:
    """storescu of one file at a time, each in its own association, until stopped: an
    exit status 0 is the acknowledgement (storescu fails on a failure status)."""

    def __init__(self, node: NodeProcess, folder: Path, name: str, round_number: int) -> None:
        self.node, self.folder, self.name = node, folder, name
        self.round_number = round_number
        self.acked: dict[str, str] = {}  # SOP Instance UID -> SHA-256 of the data set sent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            index += 1
            series = 1 + (self.name == "b")
            dataset = make_instance(SeriesSpec(5, self.round_number, series, 1000, 256), index)
            path = self.folder / f"{self.name}{index}.dcm"
            path.write_bytes(p10(dataset))
            sent = subprocess.run(
                [STORESCU, "-aec", "PACSNODE", "127.0.0.1", str(self.node.dicom_port), str(path)],
                capture_output=True,
            )
            if sent.returncode == 0:
                self.acked[str(dataset.SOPInstanceUID)] = data_set_sha256(path.read_bytes())


def test_sigkill_while_received_instances_wait_for_conversion(tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path,
        extra_toml="[storage]\nstable_age_s = 3600\ningest_workers = 1\n",
    )
    data_dir = tmp_path / "data"
    acked: dict[str, str] = {}
    cut = 0
    try:
        for round_number in range(1, ROUNDS + 1):
            node.start()
            folder = tmp_path / f"round{round_number}"
            folder.mkdir()
            senders = [Sender(node, folder, name, round_number) for name in ("a", "b")]
            for sender in senders:
                sender.thread.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                enough = sum(len(sender.acked) for sender in senders) >= 5
                if enough and received_files(data_dir):
                    break
                time.sleep(0.002)
            assert node.process is not None
            node.process.kill()
            node.process.wait()
            cut += len(received_files(data_dir))
            for sender in senders:
                sender.stop.set()
                sender.thread.join(timeout=30)
                acked.update(sender.acked)
            check_after_crash(data_dir, acked)
        assert cut, "the kill never found an instance waiting for its conversion"
        node.start()
        answer = node.request("GET", "/statistics").json()
        assert answer["CountInstances"] >= len(acked)
    finally:
        node.stop()


def check_after_crash(data_dir: Path, acked: dict[str, str]) -> None:
    core = NodeCore(CoreSettings(data_dir, stable_age_s=3600))
    core.open(background=False)  # start-up recovery, as `pacsnode serve` runs it
    try:
        assert received_files(data_dir) == [], "recovery left instances unconverted"
        assert not (data_dir / "quarantine").exists()
        assert verify(core) == []
        assert acked, "nothing acknowledged: the check checks nothing"
        for sop_uid, sha256 in acked.items():
            refs = core.refs_by_uid(Level.INSTANCE, sop_uid)
            assert len(refs) == 1, f"acknowledged {sop_uid} lost"
            record = core.index.resource(refs[0].id)
            assert record is not None and not is_received_digest(record["digest"])
            assert data_set_sha256(core.instance_p10(refs[0])) == sha256
            metadata = core.annotations.metadata(refs[0].id)
            assert (metadata["Origin"], metadata["RemoteAET"]) == ("DicomProtocol", "STORESCU")
    finally:
        core.close()
    assert list(data_dir.rglob(f"*{TEMP_SUFFIX}")) == [], "recovery left temp files"
