"""Who may do what over DICOM, and what an arrival records: a real node with
``accept_unknown_callers = false`` and ``always_allow_store = true`` (Orthanc's defaults
for DicomAlwaysAllowStore/Echo), driven by DCMTK's tools."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_bytes, ct_instance

pytestmark = pytest.mark.e2e  # starts real node processes


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("callers")
    process = NodeProcess(directory)
    process.config.write_text(
        f'data_dir = "data"\n[http]\nport = {process.http_port}\n'
        f'[dicom]\naet = "NODE"\nport = {process.dicom_port}\n'
        "accept_unknown_callers = false\nalways_allow_store = true\n"
        '[[modalities]]\nname = "known"\naet = "KNOWN"\nhost = "127.0.0.1"\nport = 1\n'
    )
    process.start()
    yield process
    process.stop()


def dcmtk(node: NodeProcess, tool: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"/usr/bin/{tool}", *options, "127.0.0.1", str(node.dicom_port)],
        capture_output=True,
        text=True,
        env=DCMTK_ENV,
        timeout=60,
    )


def test_anyone_may_store_but_only_modalities_query(node: NodeProcess, tmp_path: Path) -> None:
    sample = tmp_path / "ct.dcm"
    sample.write_bytes(ct_bytes(0))
    assert dcmtk(node, "echoscu", "-aet", "STRANGER").returncode == 0
    stored = subprocess.run(
        ["/usr/bin/storescu", "-aet", "STRANGER", "-aec", "WHOEVER", "127.0.0.1",
         str(node.dicom_port), str(sample)],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=60,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr

    instance = node.request("GET", "/instances").json()[0]
    metadata = node.request("GET", f"/instances/{instance}/metadata?expand").json()
    assert metadata["Origin"] == "DicomProtocol" and metadata["RemoteAET"] == "STRANGER"
    assert metadata["CalledAET"] == "WHOEVER"  # the title it called, which need not be ours
    assert "HttpUsername" not in metadata and "LastUpdate" not in metadata

    query = ("-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
    refused = dcmtk(node, "findscu", "-v", "-aet", "STRANGER", "-aec", "NODE", *query)
    assert "Failed: UnableToProcess" in refused.stderr, refused.stderr
    assert "(0020,000d)" not in refused.stderr.split("Find Response")[-1]
    known = dcmtk(node, "findscu", "-v", "-aet", "KNOWN", "-aec", "NODE", *query)
    assert "1.2.826.0.1.3680043.10.1234.1.1" in known.stderr


def test_a_rest_upload_records_an_empty_remote_aet(node: NodeProcess) -> None:
    answer = node.request("POST", "/instances", ct_bytes(0, patient=7)).json()
    metadata = node.request("GET", f"/instances/{answer['ID']}/metadata?expand").json()
    assert metadata["Origin"] == "RestApi" and metadata["RemoteAET"] == ""
    assert "HttpUsername" in metadata and "CalledAET" not in metadata
    assert metadata["RemoteIP"] == "127.0.0.1"
    series = node.request("GET", f"/series/{answer['ParentSeries']}/metadata?expand").json()
    assert series["RemoteAET"] == "" and "LastUpdate" in series


def test_c_get_sends_explicit_vr_when_offered(node: NodeProcess, tmp_path: Path) -> None:
    node.request("POST", "/instances", ct_bytes(0, patient=8))
    out = tmp_path / "got"
    out.mkdir()
    got = dcmtk(
        node, "getscu", "-aet", "KNOWN", "-aec", "NODE", "-od", str(out),
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00008",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    [received] = list(out.iterdir())
    assert pydicom.dcmread(received).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    received.unlink()
    dcmtk(
        node, "getscu", "-aet", "STRANGER", "-aec", "NODE", "-od", str(out),
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00008",
    )  # fmt: skip
    assert list(out.iterdir()) == []  # only modalities retrieve


def test_c_get_decompresses_for_a_requestor_that_takes_only_uncompressed(
    node: NodeProcess, tmp_path: Path
) -> None:
    sample = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    sample.PatientID = "JPEG1"
    buffer = io.BytesIO()
    sample.save_as(buffer)
    assert node.request("POST", "/instances", buffer.getvalue()).status == 200
    out = tmp_path / "got"
    out.mkdir()
    # getscu offers only uncompressed syntaxes by default
    keys = ("-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=JPEG1")
    got = dcmtk(node, "getscu", "-aet", "KNOWN", "-aec", "NODE", "-od", str(out), *keys)
    assert got.returncode == 0, got.stderr
    [received] = list(out.iterdir())
    decoded = pydicom.dcmread(received)
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert decoded.SOPInstanceUID == sample.SOPInstanceUID  # the same instance, decoded
    assert decoded.pixel_array.shape == (sample.Rows, sample.Columns, 3)


def test_a_stalled_c_move_destination_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """A destination that accepts, then never answers a C-STORE: the node aborts that
    association when it stops, rather than waiting out the DIMSE timeout."""
    stalled = threading.Event()
    destination = AE("STALLED")
    destination.add_supported_context(ct_instance(0).SOPClassUID, ExplicitVRLittleEndian)

    def never_answer(event: Any) -> int:
        stalled.set()
        time.sleep(60)
        return 0x0000

    port = free_port()
    server = destination.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, never_answer)]
    )
    node = NodeProcess(tmp_path / "node")
    node.config.write_text(
        f'data_dir = "data"\n[http]\nport = {node.http_port}\n'
        f'[dicom]\naet = "NODE"\nport = {node.dicom_port}\n'
        f'[[modalities]]\nname = "stalled"\naet = "STALLED"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    node.start()
    try:
        node.request("POST", "/instances", ct_bytes(0))
        mover = subprocess.Popen(
            ["/usr/bin/movescu", "-S", "-aec", "NODE", "--move", "STALLED", "127.0.0.1",
             str(node.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={ct_instance(0).StudyInstanceUID}"],
            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert stalled.wait(20)
        started = time.monotonic()
        node.stop()  # waits at most 20 s, or fails
        assert time.monotonic() - started < 10
        mover.wait(timeout=30)
    finally:
        node.stop()
        server.shutdown()
