"""Orthanc 1.10.1 with its DICOMweb plugin (Debian's orthanc-dicomweb) as a DICOMweb client
of pacsnode, both ways: it STOWs a study to pacsnode and retrieves one from it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsnode.node.auth import hash_password
from tests.node.dicomweb.conftest import corpus_dataset, corpus_path
from tests.node.server import NodeProcess
from tests.orthanc_server import DICOMWEB_PLUGIN, ORTHANC, OrthancProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists()),
        reason="Orthanc and its DICOMweb plugin are not installed",
    ),
]
USER, PASSWORD = "orthanc-client", "dicomweb-both-ways"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    users = f'[[users]]\nname = "{USER}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    process = NodeProcess(tmp_path / "node", extra_toml=users, credentials=(USER, PASSWORD)).start()
    yield process
    process.stop()


@pytest.fixture
def orthanc(tmp_path: Path, node: NodeProcess) -> Iterator[OrthancProcess]:
    dicomweb = {
        "Enable": True,
        "Root": "/dicom-web/",
        "Servers": {
            "pacsnode": {"Url": f"{node.url}/dicom-web/", "Username": USER, "Password": PASSWORD}
        },
    }
    server = OrthancProcess(
        tmp_path / "orthanc", extra={"Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": dicomweb}
    )
    yield server
    server.stop()


def _node_sop_uids(node: NodeProcess) -> set[str]:
    found = node.request("GET", "/dicom-web/instances").json()
    return {item["00080018"]["Value"][0] for item in found}


def test_orthanc_stows_a_study_to_pacsnode(node: NodeProcess, orthanc: OrthancProcess):
    names = ("CT_small.dcm", "examples_ybr_color.dcm")
    studies = [orthanc.call("POST", "/instances", corpus_path(n).read_bytes()) for n in names]
    answer = orthanc.call(
        "POST",
        "/dicom-web/servers/pacsnode/stow",
        json.dumps({"Resources": [s["ParentStudy"] for s in studies]}).encode(),
    )
    assert answer is None or isinstance(answer, dict)
    assert _node_sop_uids(node) == {corpus_dataset(n).SOPInstanceUID for n in names}


def test_orthanc_searches_and_retrieves_from_pacsnode(node: NodeProcess, orthanc: OrthancProcess):
    rle, ct = corpus_dataset("SC_rgb_rle_2frame.dcm"), corpus_dataset("CT_small.dcm")
    for name in ("SC_rgb_rle_2frame.dcm", "CT_small.dcm"):
        assert node.request("POST", "/instances", corpus_path(name).read_bytes()).status == 200
    found = orthanc.call(
        "POST",
        "/dicom-web/servers/pacsnode/qido",
        json.dumps({"Uri": "/studies", "Arguments": {"PatientID": str(rle.PatientID)}}).encode(),
    )
    # Orthanc re-shapes the answer it got: one "Value" string per element, with its name
    assert [study["0020000D"]["Value"] for study in found] == [rle.StudyInstanceUID]
    # (its reshaping drops JSON numbers, such as the counts, which pacsnode sends as Orthanc's
    # own DICOMweb server does: nothing to check there)
    orthanc.call(
        "POST",
        "/dicom-web/servers/pacsnode/retrieve",
        json.dumps(
            {"Resources": [{"Study": rle.StudyInstanceUID}, {"Study": ct.StudyInstanceUID}]}
        ).encode(),
    )
    deadline = time.monotonic() + 30
    while orthanc.sop_uids() != {rle.SOPInstanceUID, ct.SOPInstanceUID}:
        assert time.monotonic() < deadline, orthanc.sop_uids()
        time.sleep(0.2)
    copy = orthanc.call("GET", "/instances?expand")
    frames = {item["MainDicomTags"]["SOPInstanceUID"]: item for item in copy}
    assert frames[rle.SOPInstanceUID]["MainDicomTags"].get("NumberOfFrames") == "2"
