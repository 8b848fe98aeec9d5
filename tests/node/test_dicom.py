"""DICOM services of a real node, driven by DCMTK's tools and by pynetdicom's SCU."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def files_arrive(folder: Path, count: int, seconds: float = 10) -> bool:
    """Whether ``count`` files are in ``folder`` within ``seconds`` (a receiver writes them)."""
    deadline = time.monotonic() + seconds
    while len(list(folder.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(list(folder.iterdir())) == count


SAMPLES = ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm"]


def write_files(folder: Path, count: int, patient: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{patient}-{index}.dcm"
        path.write_bytes(ct_bytes(index, patient=patient))
        paths.append(path)
    return paths


def get_study(
    node_process: NodeProcess, study_uid: str, out: Path
) -> subprocess.CompletedProcess[str]:
    """getscu of a whole study (study root) into ``out``."""
    out.mkdir()
    return node_process.dcmtk(
        "getscu",
        "-S",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
    )


def test_echo(node_process: NodeProcess) -> None:
    assert node_process.dcmtk("echoscu").returncode == 0


def test_storescu_then_findscu_and_getscu(node_process: NodeProcess, tmp_path: Path) -> None:
    files = write_files(tmp_path / "in", 5)
    stored = node_process.dcmtk("storescu", files=tuple(map(str, files)))
    assert stored.returncode == 0, stored.stderr
    assert node_process.request("GET", "/statistics").json()["CountInstances"] == 5
    origin = node_process.request("GET", "/instances?expand=1").json()[0]["ID"]
    metadata = node_process.request("GET", f"/instances/{origin}/metadata?expand").json()
    assert metadata["Origin"] == "DicomProtocol" and metadata["RemoteAET"] == "STORESCU"

    found = node_process.dcmtk(
        "findscu",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientName=synth*",
        "-k",
        "StudyInstanceUID",
        "-k",
        "NumberOfStudyRelatedInstances",
    )
    assert found.returncode == 0
    assert "Synthetic^Patient1" in found.stderr
    assert "[5 ]" in found.stderr or "[5]" in found.stderr

    out = tmp_path / "got"
    got = get_study(node_process, pydicom.dcmread(files[0]).StudyInstanceUID, out)
    assert got.returncode == 0, got.stderr
    retrieved = sorted(pydicom.dcmread(p).InstanceNumber for p in out.iterdir())
    assert retrieved == [1, 2, 3, 4, 5]


def test_a_retrieve_that_cannot_read_an_instance_fails_cleanly(
    node_process: NodeProcess, tmp_path: Path
) -> None:
    """Storage that stops answering mid C-GET (a file gone here; a bucket down on S3): a
    failure status, no traceback, and the node goes on serving."""
    files = write_files(tmp_path / "in", 3)
    assert node_process.dcmtk("storescu", files=tuple(map(str, files))).returncode == 0
    lost = pydicom.dcmread(files[1]).SOPInstanceUID
    node_process.wait_converted()
    # its staging ZIP, and the file as received it was converted from (kept until the seal)
    staged = list((node_process.directory / "data").glob(f"studies/*/*/staging/{lost}.*"))
    assert {path.suffix for path in staged} <= {".zip", ".dcm"} and staged
    for path in staged:
        path.unlink()
    out = tmp_path / "out"
    got = get_study(node_process, pydicom.dcmread(files[0]).StudyInstanceUID, out)
    # 0xA702; DCMTK then also says its release met the response's identifier (the Failed
    # SOP Instance UID List pynetdicom sends with a failure), which it does not read
    assert "Refused: OutOfResourcesSubOperations" in got.stderr, got.stderr
    assert len(list(out.iterdir())) < 3
    assert "Traceback" not in node_process.log.read_text()
    assert node_process.dcmtk("echoscu").returncode == 0


def test_compressed_transfer_syntaxes_are_stored_as_sent(node_process: NodeProcess) -> None:
    paths = [get_testdata_file(name) for name in SAMPLES]
    ae = AE(ae_title="PYNETDICOM")
    for path in paths:
        dataset = pydicom.dcmread(path)
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", node_process.dicom_port, ae_title="PACSNODE")
    assert association.is_established
    try:
        for path in paths:
            status = association.send_c_store(pydicom.dcmread(path))
            assert status.Status == 0x0000, path
    finally:
        association.release()
    instances = node_process.request("GET", "/instances?expand=1").json()
    syntaxes = set()
    for instance in instances:
        meta = node_process.request("GET", f"/instances/{instance['ID']}/metadata?expand").json()
        syntaxes.add(meta["TransferSyntax"])
    expected = {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in paths}
    assert syntaxes == expected


def test_movescu_to_a_storescp(node_process: NodeProcess, tmp_path: Path) -> None:
    node_process.stop()
    port = free_port()
    (tmp_path / "mover").mkdir()
    node = NodeProcess(
        tmp_path / "mover",
        extra_toml=(
            f'[[modalities]]\nname = "dest"\naet = "DEST"\nhost = "127.0.0.1"\nport = {port}\n'
        ),
    )
    node.start()
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DEST", "-od", str(received), str(port)], env=DCMTK_ENV
    )
    try:
        files = write_files(tmp_path / "in", 3)
        assert node.dcmtk("storescu", files=tuple(map(str, files))).returncode == 0
        study_uid = pydicom.dcmread(files[0]).StudyInstanceUID
        moved = node.dcmtk(
            "movescu",
            "-S",
            "-aem",
            "DEST",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
        )
        assert moved.returncode == 0, moved.stderr
        assert files_arrive(received, 3)
        unknown = node.dcmtk(
            "movescu",
            "-S",
            "-aem",
            "NOBODY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
        )
        assert "Move Destination Unknown" in unknown.stderr or unknown.returncode != 0
    finally:
        scp.terminate()
        scp.wait()
        node.stop()


def test_store_refused_when_full_gives_a_failure_status(tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path,
        extra_toml=('[storage]\nmaximum_patient_count = 1\nmaximum_storage_mode = "reject"\n'),
    ).start()
    try:
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(Verification)
        association = ae.associate("127.0.0.1", node.dicom_port, ae_title="PACSNODE")
        first = pydicom.dcmread(pydicom.filebase.DicomBytesIO(ct_bytes(0, patient=1)))
        second = pydicom.dcmread(pydicom.filebase.DicomBytesIO(ct_bytes(0, patient=2)))
        assert association.send_c_store(first).Status == 0x0000
        refused = association.send_c_store(second)
        assert refused.Status == 0xA700
        assert "storage full" in str(refused.get("ErrorComment", ""))
        association.release()
        assert node.request("GET", "/statistics").json()["CountPatients"] == 1
    finally:
        node.stop()


def test_unknown_callers_can_be_refused(tmp_path: Path) -> None:
    # the [dicom] table is the last one NodeProcess writes, so the key lands in it
    node = NodeProcess(tmp_path, extra_toml="accept_unknown_callers = false\n").start()
    try:
        assert node.dcmtk("echoscu", "-aet", "STRANGER").returncode != 0
    finally:
        node.stop()


def test_a_modality_put_over_rest_is_a_caller_and_a_move_destination(tmp_path: Path) -> None:
    """No restart: the REST API, the AE's accepted callers and C-MOVE share one registry."""
    port = free_port()
    node = NodeProcess(tmp_path / "node", extra_toml="accept_unknown_callers = false\n").start()
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "VIEWER", "-od", str(received), str(port)], env=DCMTK_ENV
    )
    try:
        assert node.dcmtk("echoscu", "-aet", "VIEWER").returncode != 0
        body = {"AET": "VIEWER", "Host": "127.0.0.1", "Port": port}
        assert node.request("PUT", "/modalities/viewer", body).status == 200
        assert node.dcmtk("echoscu", "-aet", "VIEWER").returncode == 0
        assert node.dcmtk("echoscu", "-aet", "STRANGER").returncode != 0
        files = write_files(tmp_path / "in", 2)
        stored = node.dcmtk("storescu", "-aet", "VIEWER", files=tuple(map(str, files)))
        assert stored.returncode == 0, stored.stderr
        study_uid = pydicom.dcmread(files[0]).StudyInstanceUID
        moved = node.dcmtk(
            "movescu",
            "-S",
            "-aet",
            "VIEWER",
            "-aem",
            "VIEWER",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
        )
        assert moved.returncode == 0, moved.stderr
        assert files_arrive(received, 2)
        assert node.request("DELETE", "/modalities/viewer").status == 200
        assert node.dcmtk("echoscu", "-aet", "VIEWER").returncode != 0
    finally:
        scp.terminate()
        scp.wait()
        node.stop()
