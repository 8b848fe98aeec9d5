"""ZIP bombs against a real node (issue 13, item 8): a small ZIP that inflates far, sent
to ``POST /instances``, to ``pacsnode import``, or pushed by a pinned peer (a huge frame,
or a metadata gzip of whitespace), is refused with a code and stores nothing, and the
node's peak memory (VmHWM) stays within a fixed bound the old code blew by hundreds of MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsnode.peer.identity import load_or_create
from tests.node.server import REPO, NodeProcess, free_port
from tests.peer.test_peer_hardening import Peer
from tests.peer.test_replication import peer_toml
from tests.storage.bombs import (
    MiB,
    big_frame_chunks,
    deflated_p10_bomb,
    rewrite_study_zip,
    whitespace_metadata,
    zip_member_bomb,
)
from tests.storage.helpers import ct_bytes, ct_instance

pytestmark = pytest.mark.e2e  # starts real node processes

BOMB = 256 * MiB  # inflated; about 256 KiB on the wire
GROWTH_BOUND = 96 * MiB  # the old code grew by at least BOMB
STUDY = ct_instance(0, patient=7).StudyInstanceUID


def reset_peak_rss(pid: int) -> int:
    """Reset the process's peak resident size to its current one (Linux's clear_refs 5), so
    one test's peak is not hidden by an earlier one's; the peak after the reset."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss(pid)


def peak_rss(pid: int) -> int:
    """The process's peak resident size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    with_good = {"good.dcm": ct_bytes(1, patient=8)}
    return {
        "member": zip_member_bomb(folder / "member.zip", BOMB),
        "mixed": zip_member_bomb(folder / "mixed.zip", BOMB, before=with_good),
        "deflated": deflated_p10_bomb(folder / "deflated.dcm", ct_instance(3, patient=8), BOMB),
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Peer]]:
    root = tmp_path_factory.mktemp("bombed")
    client = load_or_create(root / "client" / "identity")
    port = free_port()
    peering = peer_toml(port, [{"name": "bomber", "fingerprint": client.fingerprint}])
    storage = "[storage]\nstable_age_s = 3600\nmax_metadata_size_mb = 8\n"
    process = NodeProcess(root / "node", extra_toml=storage + peering).start()
    try:
        warm = process.request("POST", "/instances", ct_bytes(0, patient=9))
        assert warm.status == 200  # the first upload's imports count in the baseline
        yield process, Peer(client, port)
    finally:
        process.stop()


def _pid(node: NodeProcess) -> int:
    assert node.process is not None
    return node.process.pid


def _instance_count(node: NodeProcess) -> int:
    return len(node.request("GET", "/instances").json())


def test_an_uploaded_zip_bomb_is_refused_whole_in_bounded_memory(
    node: tuple[NodeProcess, Peer], bombs: dict[str, Path]
) -> None:
    process, _ = node
    before, count = reset_peak_rss(_pid(process)), _instance_count(process)
    for name in ("member", "mixed"):
        answer = process.request("POST", "/instances", bombs[name].read_bytes())
        assert answer.status == 413, answer.body
        error = answer.json()
        assert error["ErrorCode"] == "archive-too-large", error
        assert "times its compressed size" in error["Message"]
        assert str(process.directory) not in answer.body.decode()
    assert peak_rss(_pid(process)) - before < GROWTH_BOUND
    assert _instance_count(process) == count  # not even the good file of the mixed ZIP


def test_a_deflated_file_bomb_is_refused_in_bounded_memory(
    node: tuple[NodeProcess, Peer], bombs: dict[str, Path]
) -> None:
    process, _ = node
    before, count = reset_peak_rss(_pid(process)), _instance_count(process)
    answer = process.request("POST", "/instances", bombs["deflated"].read_bytes())
    assert answer.status == 413, answer.body
    assert answer.json()["ErrorCode"] == "instance-too-large"
    assert peak_rss(_pid(process)) - before < GROWTH_BOUND
    assert _instance_count(process) == count


def _study_zip(tmp: Path) -> Path:
    """A real study ZIP, made by a node's own store."""
    from pacsnode.storage.store import StudyStore

    with StudyStore(tmp / "maker") as store:
        store.put_instance(ct_bytes(0, patient=7))
        store.put_instance(ct_bytes(1, patient=7))
        return Path(store.study_zip(STUDY))


def _push(peer: Peer, path: Path) -> tuple[int, dict[str, object]]:
    data = path.read_bytes()
    start = peer.json(
        "POST",
        "/peer/v1/uploads",
        {"Study": STUDY, "Size": len(data), "SHA256": hashlib.sha256(data).hexdigest()},
    )
    upload = f"/peer/v1/uploads/{start['Upload']}"
    assert peer.call("PATCH", upload, data, {"Upload-Offset": "0"})[0] == 200
    status, body = peer.call("POST", f"{upload}/commit", b"{}")
    assert body, status
    return status, json.loads(body)


def test_a_peer_study_zip_bomb_is_refused_in_bounded_memory(
    node: tuple[NodeProcess, Peer], tmp_path: Path
) -> None:
    process, peer = node
    good = _study_zip(tmp_path)
    frame = f"instances/{ct_instance(0, patient=7).SOPInstanceUID}/frames/1"
    huge_frame = rewrite_study_zip(
        good,
        tmp_path / "frame.zip",
        lambda name, data: big_frame_chunks(BOMB) if name.endswith(frame) else None,
    )
    # Whitespace after the JSON array is still JSON: the old code accepted this one.
    whitespace = rewrite_study_zip(
        good,
        tmp_path / "whitespace.zip",
        lambda name, data: whitespace_metadata(data, BOMB) if name.endswith("metadata") else None,
    )
    before = reset_peak_rss(_pid(process))
    for bomb in (huge_frame, whitespace):
        assert bomb.stat().st_size < 2 * MiB
        status, answer = _push(peer, bomb)
        assert status == 413, answer
        assert answer["ErrorCode"] == "archive-too-large", answer
    assert peak_rss(_pid(process)) - before < GROWTH_BOUND
    assert process.request("POST", "/tools/lookup", STUDY).json() == []
    status, answer = _push(peer, good)  # the same study, unbombed, goes in
    assert status == 200 and len(answer["Added"]) == 2, answer  # type: ignore[arg-type]


_MEASURED_CLI = (
    "import resource, runpy, sys\n"
    "sys.argv = ['pacsnode', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('pacsnode.node.cli', run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    code = exit.code\n"
    "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _import(config: Path, path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    run = subprocess.run(
        [sys.executable, "-c", _MEASURED_CLI, "--config", str(config), "import", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    maxrss = [line for line in run.stderr.splitlines() if line.startswith("MAXRSS")]
    return run, int(maxrss[-1].split()[1]) * 1024


def test_pacsnode_import_refuses_a_zip_bomb(tmp_path: Path, bombs: dict[str, Path]) -> None:
    config = tmp_path / "node.toml"
    config.write_text('data_dir = "data"\n')
    small = tmp_path / "small.zip"
    zip_member_bomb(small, 1024, before={"good.dcm": ct_bytes(2, patient=8)})
    baseline_run, baseline = _import(config, small)
    assert baseline_run.returncode == 1  # its 1 KiB of zeros is not DICOM
    refused, peak = _import(config, bombs["mixed"])
    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout) == {"stored": 0, "duplicate": 0, "refused": 1}
    assert "times its compressed size" in refused.stderr
    assert peak - baseline < GROWTH_BOUND
