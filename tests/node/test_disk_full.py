"""A really full data disk (ENOSPC) under a real node: ingest, sealing and peer merges.

The data directory is a small tmpfs (root and ``mount``, as in CI; skipped with the
reason otherwise). A filler file beside the data directory leaves exactly as much room
as a scenario needs, so the disk runs out mid-ingest, mid-seal or mid-merge; growing the
tmpfs (``mount -o remount,size=``) gives the room back. Each scenario expects clear
refusals (HTTP 507 with the JSON error envelope, DIMSE 0xA700 Out of Resources, STOW's
failure reasons), nothing stored damaged, no Python traceback in an answer or the node's
log, and full recovery once space returns: new stores succeed, pending studies seal,
``pacsnode verify`` is clean and every instance acknowledged before reads back the same.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.node.server import REPO, NodeProcess, Response, free_port
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # real node processes on a real (small) file system

MiB = 1024 * 1024


class SmallDisk:
    """A tmpfs at ``mount``; ``fill`` leaves a given room free, ``grow`` remounts it."""

    def __init__(self, mount: Path, size_mb: int) -> None:
        self.mount = mount
        mount.mkdir(parents=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (needs root and mount): {mounted.stderr.strip()}")
        self.filler = mount / "filler"

    def free(self) -> int:
        return shutil.disk_usage(self.mount).free

    def fill(self, leave: int) -> None:
        """Grow (or shrink) the filler until about ``leave`` bytes stay free."""
        size = self.filler.stat().st_size if self.filler.exists() else 0
        target = max(0, size + self.free() - leave)
        with open(self.filler, "ab") as handle:
            handle.truncate(min(size, target))
            handle.seek(0, io.SEEK_END)
            while handle.tell() < target:
                try:
                    handle.write(b"\0" * min(MiB, target - handle.tell()))
                    handle.flush()
                except OSError:  # ENOSPC: full is as full as it gets
                    break

    def grow(self, size_mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_mb}m", str(self.mount)], check=True)

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.mount)], check=False)


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[list[SmallDisk]]:
    """Small tmpfs disks made by the test through ``disks.append``; always unmounted."""
    made: list[SmallDisk] = []
    yield made
    for disk in made:
        disk.unmount()


def node_on(disk: SmallDisk, directory: Path, extra_toml: str = "") -> NodeProcess:
    """A node whose data directory lives on ``disk`` (its config and log do not)."""
    (disk.mount / "data").mkdir(mode=0o700)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").symlink_to(disk.mount / "data")
    return NodeProcess(directory, extra_toml=extra_toml)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_refused_cleanly(answer: Response, status: int = 507) -> dict:
    """The JSON error envelope with the status, and no Python in it."""
    assert answer.status == status, (answer.status, answer.body[:500])
    assert answer.headers.get("Content-Type", "").startswith("application/json")
    body = answer.json()
    assert "Traceback" not in answer.body.decode() and 'File "' not in answer.body.decode()
    if status == 507:
        assert body["ErrorCode"] == "storage-full", body
    return body


def stow_body(files: list[bytes], boundary: str = "fullDiskBoundary") -> tuple[bytes, dict]:
    parts = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
        for f in files
    )
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    return parts + b"--" + boundary.encode() + b"--\r\n", headers


def stow(node: NodeProcess, files: list[bytes]) -> Response:
    body, headers = stow_body(files)
    return node.request("POST", "/dicom-web/studies", body, headers=headers)


def storescu(node: NodeProcess, directory: Path, files: dict[str, bytes]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        (directory / name).write_bytes(data)
        paths.append(str(directory / name))
    done = node.dcmtk("storescu", "-v", files=tuple(paths))
    return done.stdout + done.stderr


_RECORD = re.compile(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |--- Logging error)")


def no_tracebacks(node: NodeProcess) -> None:
    """No Python traceback in the node's log: a full disk is an expected condition (the
    audit log's writer says once that it cannot write, and counts what it lost)."""
    for record in _RECORD.split(node.log.read_text(errors="replace")):
        assert "Traceback" not in record and "Logging error" not in record, record[:4000]


def pacsnode_verify(node: NodeProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(node.config), "verify"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def wait_until(condition: object, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.1)


def all_stable(node: NodeProcess) -> bool:
    studies = node.request("GET", "/studies?expand").json()
    return bool(studies) and all(study["IsStable"] for study in studies)


def test_a_full_disk_refuses_every_way_in_and_recovers(
    tmp_path: Path, disks: list[SmallDisk]
) -> None:
    disk = SmallDisk(tmp_path / "disk", 24)
    disks.append(disk)
    node = node_on(disk, tmp_path / "node", "[storage]\nstable_age_s = 1\n").start()
    acked: dict[str, str] = {}  # instance id -> SHA-256 of the file sent

    def post(data: bytes) -> Response:
        answer = node.request("POST", "/instances", data)
        if answer.status == 200:
            acked[answer.json()["ID"]] = sha(data)
        return answer

    try:
        for index in range(6):  # a sealed study to begin with
            assert post(ct_bytes(index, study=1, size=128)).status == 200
        first_study_ids = list(acked)
        wait_until(lambda: all_stable(node), what="the first study sealed")

        # --- REST: fill the disk with one study's staged instances ---------------------
        disk.fill(leave=600_000)
        refusals = []
        for index in range(200):
            answer = post(ct_bytes(index, study=2, size=128))
            if answer.status != 200:
                refusals.append(answer)
                if len(refusals) == 3:
                    break
        assert len(acked) > 6 and len(refusals) == 3, "the disk never filled"
        for answer in refusals:
            assert_refused_cleanly(answer)
        # a body past the in-memory spool (8 MiB): the spool itself meets the full disk
        big = io.BytesIO()
        with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as archive:
            for index in range(66):
                archive.writestr(f"{index}.dcm", ct_bytes(index, study=3, size=256))
        assert big.tell() > 8 * MiB
        assert_refused_cleanly(node.request("POST", "/instances", big.getvalue()))

        # --- STOW-RS and C-STORE meet the same full disk --------------------------------
        stow_files = [ct_bytes(index, study=4, size=128) for index in range(2)]
        disk.fill(leave=0)  # no room for the request's spool: refused whole
        assert_refused_cleanly(stow(node, stow_files))
        # room for the spool (removed after the request) but not for storing the parts:
        # each part refused with the ingest's own status, Out of Resources
        disk.fill(leave=sum(map(len, stow_files)) + 16_384)
        stowed = stow(node, stow_files)
        assert stowed.status == 409, (stowed.status, stowed.body[:500])
        failed = stowed.json()["00081198"]["Value"]
        assert [item["00081197"]["Value"] for item in failed] == [[0xA700], [0xA700]]
        disk.fill(leave=0)
        said = storescu(node, tmp_path / "scu-full", {"a.dcm": ct_bytes(0, study=5, size=128)})
        assert "Store Response (Refused: OutOfResources)" in said, said  # 0xA7xx

        # --- while full: what was acknowledged reads back, the seal waits ---------------
        for instance_id, digest in acked.items():
            answer = node.request("GET", f"/instances/{instance_id}/file")
            assert answer.status == 200 and sha(answer.body) == digest
        time.sleep(2.5)  # two ticks of the sealer: study 2 is quiet, but cannot be sealed
        assert not all_stable(node)
        assert node.request("GET", "/statistics").json()["CountInstances"] == len(acked)
        # Deleting to make room: an instance of a sealed study needs its ZIP rewritten
        # (refused cleanly while full, nothing lost); a whole study is removed outright.
        disk.fill(leave=0)
        first = first_study_ids[0]
        refused = node.request("DELETE", f"/instances/{first}")
        if refused.status != 200:
            assert_refused_cleanly(refused)
            answer = node.request("GET", f"/instances/{first}/file")
            assert answer.status == 200 and sha(answer.body) == acked[first]
        study = node.request("GET", f"/instances/{first_study_ids[1]}/study").json()["ID"]
        assert node.request("DELETE", f"/studies/{study}").status == 200
        for instance_id in first_study_ids:
            acked.pop(instance_id, None)
        assert disk.free() > 100_000  # the study's ZIP, about 150 KB

        # --- space returns: the seal completes, every way in stores again ---------------
        disk.grow(64)
        wait_until(lambda: all_stable(node), what="the seal after space returned")
        assert post(ct_bytes(0, study=6, size=128)).status == 200
        stowed = stow(node, [ct_bytes(index, study=4, size=128) for index in range(2)])
        assert stowed.status == 200, stowed.body[:500]
        said = storescu(node, tmp_path / "scu-room", {"a.dcm": ct_bytes(0, study=5, size=128)})
        assert "Received Store Response (Success)" in said, said
        assert node.request("GET", "/statistics").json()["CountInstances"] == len(acked) + 3
    finally:
        node.stop()
    no_tracebacks(node)
    pacsnode_verify(node)
    node.start()
    try:
        for instance_id, digest in acked.items():
            answer = node.request("GET", f"/instances/{instance_id}/file")
            assert answer.status == 200 and sha(answer.body) == digest
    finally:
        node.stop()


def linked_on_disks(
    tmp_path: Path, disk_a: SmallDisk, disk_b: SmallDisk
) -> tuple[NodeProcess, NodeProcess]:
    """Site A dials site B (push and pull); each keeps its data on its own small disk."""
    from tests.peer.test_replication import identity_of, peer_toml

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for disk, directory in ((disk_a, a_dir), (disk_b, b_dir)):
        (disk.mount / "data").mkdir(mode=0o700)
        directory.mkdir()
        (directory / "data").symlink_to(disk.mount / "data")
    with ThreadPoolExecutor(2) as both:  # each a process start: side by side
        a_id, b_id = both.map(identity_of, (a_dir, b_dir))
        b_port = free_port()
        to_b = {"name": "siteb", "url": f"https://127.0.0.1:{b_port}", "fingerprint": b_id}
        site_a = NodeProcess(a_dir, extra_toml=peer_toml(free_port(), [to_b]))
        site_b = NodeProcess(
            b_dir, extra_toml=peer_toml(b_port, [{"name": "sitea", "fingerprint": a_id}])
        )
        list(both.map(NodeProcess.start, (site_a, site_b)))
    return site_a, site_b


def files_of(node: NodeProcess) -> dict[str, str]:
    """Instance id -> SHA-256 of its file, as the node gives it back."""
    found = {}
    for instance_id in node.request("GET", "/instances").json():
        answer = node.request("GET", f"/instances/{instance_id}/file")
        assert answer.status == 200
        found[instance_id] = sha(answer.body)
    return found


def job_done(node: NodeProcess, job_id: str) -> dict:
    job: dict = {}

    def finished() -> bool:
        job.update(node.request("GET", f"/jobs/{job_id}").json())
        return job["State"] in ("Success", "Failure")

    wait_until(finished, timeout=60, what=f"job {job_id}")
    return job


def test_a_full_disk_during_peer_merges_refuses_and_recovers(
    tmp_path: Path, disks: list[SmallDisk]
) -> None:
    for name in ("disk-a", "disk-b"):  # each kept at once: unmounted whatever follows
        disks.append(SmallDisk(tmp_path / name, 24))
    disk_a, disk_b = disks
    site_a, site_b = linked_on_disks(tmp_path, disk_a, disk_b)
    try:
        for index in range(2):
            assert site_a.request("POST", "/instances", ct_bytes(index, patient=1)).status == 200
        for index in range(12):
            data = ct_bytes(index, patient=2, study=2, size=256)
            assert site_b.request("POST", "/instances", data).status == 200
        before_a = files_of(site_a)

        # --- pull into a full disk: the merge is refused, nothing of it stored ----------
        disk_a.fill(leave=200_000)  # less than the study's ZIP
        failed = site_a.request("POST", "/peers/siteb/sync?wait", b"")
        assert failed.status == 502 and failed.json()["State"] == "Failure", failed.body
        assert "disk full" in failed.json()["ErrorDescription"]
        assert files_of(site_a) == before_a
        disk_a.grow(64)
        pulled = site_a.request("POST", "/peers/siteb/sync?wait", b"").json()
        assert pulled["State"] == "Success" and pulled["Content"]["PulledInstances"] == 12

        # --- push to a full peer: room for the upload, not for merging it ---------------
        for index in range(12):
            data = ct_bytes(index, patient=1, study=3, size=256)
            assert site_a.request("POST", "/instances", data).status == 200
        before_b = files_of(site_b)
        disk_b.fill(leave=1_600_000)  # the upload (~1.2 MB) fits, its merged ZIP beside it not
        job_id = site_a.request("POST", "/peers/siteb/sync", b"").json()["ID"]
        wait_until(lambda: "refused: disk full" in site_b.log.read_text(), what="B's refusal")
        assert files_of(site_b) == before_b
        disk_b.grow(64)
        job = job_done(site_a, job_id)
        assert job["State"] == "Success", job
        assert job["Content"]["PushedInstances"] == 12 and job["Content"]["Retries"], job
        assert files_of(site_a) == files_of(site_b) and len(files_of(site_a)) == 26
    finally:
        site_a.stop()
        site_b.stop()
    for node in (site_a, site_b):
        no_tracebacks(node)
    with ThreadPoolExecutor(2) as both:
        list(both.map(pacsnode_verify, (site_a, site_b)))
