"""A whole node on the ``s3`` storage backend, against a real S3 server (SeaweedFS).

Studies arrive over DICOM (DCMTK's storescu) and seal into the bucket; they are queried,
retrieved over REST, DICOMweb (metadata, frames) and C-GET, replicated to a second node
(itself on S3), recycled; the node is killed with SIGKILL and restarted; and
``pacsnode reindex`` on a fresh data directory rebuilds the index from the bucket alone.
Every instance acknowledged comes back with the very bytes sent, and a study's ZIP is
only ever in the bucket (no ``study.zip`` on the data disk).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import pytest

from pacsnode.storage.backends.s3_client import ObjectClient
from pacsnode.storage.backends.s3_settings import parse_settings
from tests.node.server import REPO, NodeProcess, free_port
from tests.node.test_cli import pacsnode
from tests.peer.test_replication import identity_of, peer_toml, sync
from tests.s3_server import BUCKET, SeaweedFS, unique_prefix
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # real node processes, DCMTK, a real S3 server

SLICES = 4  # per study; one study per patient
STORAGE = {"stable_age_s": 0.3, "maximum_patient_count": 3, "maximum_storage_mode": "recycle"}


class Site:
    """A node on S3 (its own prefix of the session's bucket) and what it was sent."""

    def __init__(self, directory: Path, seaweedfs: SeaweedFS, extra_toml: str = "") -> None:
        self.directory = directory
        self.prefix = unique_prefix()
        self.seaweedfs = seaweedfs
        toml = seaweedfs.toml(BUCKET, self.prefix, STORAGE) + "[search]\nenabled = false\n"
        self.node = NodeProcess(directory, toml + extra_toml)
        self.client = ObjectClient(parse_settings(seaweedfs.settings(BUCKET, self.prefix), {}))

    def sealed(self) -> set[str]:
        """The studies whose ZIP is in the bucket."""
        return {info.key.split("/")[-2] for info in self.client.list(self.prefix)}

    def staged(self) -> list[Path]:
        return list((self.directory / "data" / "studies").rglob("staging/*.zip"))

    def wait_sealed(self, studies: set[str]) -> None:
        deadline = time.monotonic() + 30
        while (self.sealed() != studies or self.staged()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.sealed() == studies and not self.staged()
        assert not list((self.directory / "data").rglob("study.zip"))


def patient_files(folder: Path, patient: int) -> dict[str, Path]:
    """SOP Instance UID -> file of the patient's study."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for index in range(SLICES):
        data = ct_bytes(index, patient=patient)
        path = folder / f"{patient}-{index}.dcm"
        path.write_bytes(data)
        files[str(pydicom.dcmread(path).SOPInstanceUID)] = path
    return files


def study_uid(patient: int) -> str:
    return str(pydicom.dcmread(io.BytesIO(ct_bytes(0, patient=patient))).StudyInstanceUID)


def store(node: NodeProcess, files: dict[str, Path]) -> None:
    sent = node.dcmtk("storescu", files=tuple(str(path) for path in files.values()))
    assert sent.returncode == 0, sent.stderr


def instances(node: NodeProcess) -> dict[str, str]:
    """SOP Instance UID -> the node's instance id."""
    listed = node.request("GET", "/instances?expand").json()
    return {item["MainDicomTags"]["SOPInstanceUID"]: item["ID"] for item in listed}


def data_set(p10: bytes) -> bytes:
    """A Part 10 file's bytes after its file meta group, which the receiver writes
    (an instance that came over DICOM had none)."""
    assert p10[128:132] == b"DICM" and p10[132:136] == b"\x02\x00\x00\x00"
    return p10[144 + int.from_bytes(p10[140:144], "little") :]


def assert_files_served(node: NodeProcess, files: dict[str, Path]) -> None:
    """Exactly the sent instances, each data set given back byte for byte."""
    held = instances(node)
    assert held.keys() == files.keys()
    for sop_uid, path in files.items():
        answer = node.request("GET", f"/instances/{held[sop_uid]}/file")
        assert answer.status == 200, sop_uid
        assert data_set(answer.body) == data_set(path.read_bytes()), sop_uid


def check_queries_and_retrievals(node: NodeProcess, files: dict[str, Path], out: Path) -> None:
    found = node.request("POST", "/tools/find", {"Level": "Study", "Query": {"PatientID": "PAT*"}})
    assert len(found.json()) == 2
    cfind = node.dcmtk(
        "findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=Synth*",
        "-k", "StudyInstanceUID",
    )  # fmt: skip
    assert cfind.returncode == 0 and cfind.stderr.count("(0020,000d)") == 2, cfind.stderr
    # DICOMweb: the study's metadata and a frame, read by ranges from the bucket
    dataset = pydicom.dcmread(next(iter(files.values())))
    study = f"/dicom-web/studies/{dataset.StudyInstanceUID}"
    metadata = node.request(
        "GET", f"{study}/metadata", headers={"Accept": "application/dicom+json"}
    )
    assert metadata.status == 200
    assert {item["00080018"]["Value"][0] for item in metadata.json()} <= files.keys()
    frame_url = (
        f"{study}/series/{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}/frames/1"
    )
    frame = node.request("GET", frame_url)
    assert frame.status == 200 and dataset.PixelData in frame.body
    # the study as a ZIP of DICOM files, made from its ZIP in the bucket
    (study_id,) = node.request("POST", "/tools/lookup", dataset.StudyInstanceUID).json()
    archive = node.request("GET", f"/studies/{study_id['ID']}/archive")
    assert archive.status == 200
    assert len(zipfile.ZipFile(io.BytesIO(archive.body)).namelist()) >= SLICES
    # C-GET of that study
    out.mkdir()
    got = node.dcmtk(
        "getscu", "-S", "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={dataset.StudyInstanceUID}",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    retrieved = {str(pydicom.dcmread(path).SOPInstanceUID): path for path in out.iterdir()}
    assert len(retrieved) == SLICES
    for sop_uid, path in retrieved.items():
        assert pydicom.dcmread(path).PixelData == pydicom.dcmread(files[sop_uid]).PixelData


def test_a_node_on_s3(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_id, b_id = identity_of(a_dir), identity_of(b_dir)
    b_port = free_port()
    to_b = {"name": "siteb", "url": f"https://127.0.0.1:{b_port}", "fingerprint": b_id}
    site_a = Site(a_dir, seaweedfs, peer_toml(free_port(), [to_b]))
    site_b = Site(b_dir, seaweedfs, peer_toml(b_port, [{"name": "sitea", "fingerprint": a_id}]))
    a, b = site_a.node, site_b.node
    sent = {p: patient_files(tmp_path / "in", p) for p in range(1, 6)}
    a.start()
    b.start()
    try:
        store(a, {**sent[1], **sent[2]})
        site_a.wait_sealed({study_uid(1), study_uid(2)})
        assert_files_served(a, {**sent[1], **sent[2]})
        check_queries_and_retrievals(a, sent[1], tmp_path / "got")

        assert sync(a, "siteb")["State"] == "Success"
        assert_files_served(b, {**sent[1], **sent[2]})
        site_b.wait_sealed({study_uid(1), study_uid(2)})

        # Three patients at most: the fourth recycles the first, its ZIP leaves the bucket.
        store(a, {**sent[3], **sent[4]})
        assert_files_served(a, {**sent[2], **sent[3], **sent[4]})
        site_a.wait_sealed({study_uid(p) for p in (2, 3, 4)})

        # Killed right after a store: the fifth patient is acknowledged, staged, not sealed.
        store(a, sent[5])
        assert a.process is not None
        a.process.kill()
        a.process.wait()
    finally:
        b.stop()
        a.stop()
    kept = {**sent[3], **sent[4], **sent[5]}
    a.start()
    try:
        assert_files_served(a, kept)
        site_a.wait_sealed({study_uid(p) for p in (3, 4, 5)})
        assert_files_served(a, kept)
    finally:
        a.stop()

    # The bucket alone: a fresh data directory, reindexed from it, serves everything.
    fresh = NodeProcess(tmp_path / "fresh", seaweedfs.toml(BUCKET, site_a.prefix, STORAGE))
    reindexed = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(fresh.config), "reindex"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert reindexed.returncode == 0, reindexed.stderr
    fresh.start()
    try:
        assert_files_served(fresh, kept)
        assert fresh.request("GET", "/statistics").json()["CountPatients"] == 3
    finally:
        fresh.stop()


def test_a_node_while_its_s3_server_is_down(tmp_path: Path) -> None:
    """Reads of sealed studies answer 503 storage-unavailable (no traceback, nothing
    damaged), stores still succeed (staging is on the data disk), and once the server is
    back the waiting studies seal into the bucket."""
    server = SeaweedFS(tmp_path / "weed").start()
    try:
        server.create_bucket(BUCKET)
        site = Site(tmp_path / "node", server)
        site.node.config.write_text(
            site.node.config.read_text().replace("[plugins.s3]", "[plugins.s3]\nretries = 0")
        )
        sent = {p: patient_files(tmp_path / "in", p) for p in (1, 2)}
        node = site.node.start()
        try:
            store(node, sent[1])
            site.wait_sealed({study_uid(1)})
            server.stop()
            (instance, *_) = instances(node).values()
            answer = node.request("GET", f"/instances/{instance}/file")
            assert answer.status == 503 and answer.json()["ErrorCode"] == "storage-unavailable"
            assert "bucket 'pacsnode-tests'" in answer.json()["Message"]
            store(node, sent[2])  # acknowledged: durable in staging
            server.start()
            site.wait_sealed({study_uid(1), study_uid(2)})
            assert_files_served(node, {**sent[1], **sent[2]})
        finally:
            node.stop()
        assert "Traceback" not in node.log.read_text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"bucket": "no-such-bucket"}, "bucket 'no-such-bucket' at http://127.0.0.1:"),
        ({"secret_key": "wrong"}, "refused the credentials"),
        ({"cache_mb": -1}, "[plugins.s3] cache_mb must be an integer of at least 0"),
    ],
)
def test_a_bucket_the_node_cannot_use_stops_its_start(
    seaweedfs: SeaweedFS, tmp_path: Path, change: dict[str, object], said: str
) -> None:
    settings = {**seaweedfs.settings(BUCKET, unique_prefix(), retries=0), **change}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    toml = '[storage]\nbackend = "s3"\n[plugins.s3]\n' + "\n".join(lines) + "\n"
    node = NodeProcess(tmp_path, toml)
    started = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(node.config), "serve"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 2
    (line,) = started.stderr.strip().splitlines()  # one line, no traceback
    assert said in line and "<?xml" not in line


def cli(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return pacsnode(node.config, *args)


def test_a_node_moves_from_its_disk_to_a_bucket(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """The site outgrows its disk: [storage] backend switched to s3 refuses to start until
    the studies are moved, ``pacsnode migrate-storage --from local`` moves them (checked,
    the disk's copies removed), and the node then serves every instance from the bucket."""
    directory = tmp_path / "site"
    sent = {p: patient_files(tmp_path / "in", p) for p in (1, 2)}
    on_disk = NodeProcess(directory, "[storage]\nstable_age_s = 0.3\n[search]\nenabled = false\n")
    on_disk.start()
    try:
        store(on_disk, {**sent[1], **sent[2]})
        deadline = time.monotonic() + 30
        while len(list(directory.rglob("study.zip"))) < 2:
            assert time.monotonic() < deadline, "the studies were never sealed"
            time.sleep(0.1)
    finally:
        on_disk.stop()

    prefix = unique_prefix()
    toml = seaweedfs.toml(BUCKET, prefix, {"stable_age_s": 0.3}) + "[search]\nenabled = false\n"
    on_s3 = NodeProcess(directory, toml)
    refused = cli(on_s3, "serve")
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]  # after the start's log lines
    assert "holds none of the sealed studies" in line and "migrate-storage --from" in line
    assert cli(on_s3, "reindex").returncode == 2  # which would have unindexed them all

    moved = cli(on_s3, "migrate-storage", "--from", "local", "--remove-source")
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["copied"] == 2 and report["removed from the old backend"] == 2
    assert not list(directory.rglob("study.zip"))
    again = cli(on_s3, "migrate-storage", "--from", "local")
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] == 0
    assert cli(on_s3, "migrate-storage", "--from", "s3").returncode == 2  # the configured one

    client = ObjectClient(parse_settings(seaweedfs.settings(BUCKET, prefix), {}))
    assert {info.key.split("/")[-2] for info in client.list(prefix)} == {
        study_uid(1),
        study_uid(2),
    }
    on_s3.start()
    try:
        assert_files_served(on_s3, {**sent[1], **sent[2]})
    finally:
        on_s3.stop()
