"""The REST API of a real node process, driven as curl would."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.node.server import NodeProcess
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def upload(node: NodeProcess, data: bytes) -> dict:
    response = node.request("POST", "/instances", data)
    assert response.status == 200, response.body
    return response.json()


def test_upload_list_show_and_delete(node_process: NodeProcess) -> None:
    first = upload(node_process, CT_SMALL.read_bytes())
    assert first["Status"] == "Success"
    assert upload(node_process, CT_SMALL.read_bytes())["Status"] == "AlreadyStored"
    assert node_process.request("GET", "/studies").json() == [first["ParentStudy"]]
    study = node_process.request("GET", f"/studies/{first['ParentStudy']}").json()
    assert study["Type"] == "Study" and study["ParentPatient"] == first["ParentPatient"]
    assert study["PatientMainDicomTags"]["PatientID"] == "1CT1"
    assert study["Series"] == [first["ParentSeries"]] and study["IsStable"] is False
    expanded = node_process.request("GET", "/instances?expand=1").json()
    assert expanded[0]["ParentSeries"] == first["ParentSeries"]
    assert expanded[0]["IndexInSeries"] == 1
    deleted = node_process.request("DELETE", f"/instances/{first['ID']}").json()
    assert deleted == {"RemainingAncestor": None}
    assert node_process.request("GET", "/patients").json() == []


def test_delete_reports_remaining_ancestor(node_process: NodeProcess) -> None:
    first = upload(node_process, ct_bytes(0))
    upload(node_process, ct_bytes(1))
    answer = node_process.request("DELETE", f"/instances/{first['ID']}").json()
    assert answer["RemainingAncestor"]["ID"] == first["ParentSeries"]
    assert answer["RemainingAncestor"]["Type"] == "Series"


def test_file_tags_frames_and_archive(node_process: NodeProcess) -> None:
    ids = upload(node_process, CT_SMALL.read_bytes())
    instance = f"/instances/{ids['ID']}"
    file = node_process.request("GET", f"{instance}/file")
    assert file.headers["Content-Type"] == "application/dicom"
    copy = pydicom.dcmread(io.BytesIO(file.body))
    assert file.body == CT_SMALL.read_bytes()  # as it was uploaded
    tags = node_process.request("GET", f"{instance}/tags").json()
    assert tags["0010,0020"] == {"Name": "PatientID", "Type": "String", "Value": "1CT1"}
    simple = node_process.request("GET", f"{instance}/simplified-tags").json()
    assert simple["PatientID"] == "1CT1" and simple["PixelData"] is None  # binary: null
    assert node_process.request("GET", f"{instance}/frames").json() == [0]
    raw = node_process.request("GET", f"{instance}/frames/0/raw")
    assert raw.body == copy.PixelData
    assert node_process.request("GET", f"{instance}/frames/1/raw").status == 404
    archive = node_process.request("GET", f"/studies/{ids['ParentStudy']}/archive")
    assert archive.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.body)) as members:
        names = members.namelist()
        assert len(names) == 1 and names[0].endswith(".dcm")
        assert pydicom.dcmread(io.BytesIO(members.read(names[0]))).PatientID == "1CT1"


def test_zip_upload_reports_each_file(node_process: NodeProcess) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.dcm", ct_bytes(0))
        archive.writestr("b.dcm", ct_bytes(1))
        archive.writestr("notes.txt", b"not dicom")  # passed over, as Orthanc does
        archive.writestr("c.dcm", ct_bytes(2)[:400])  # DICOM, but cut short: reported
    answers = upload(node_process, buffer.getvalue())
    assert [a["Status"] for a in answers] == ["Success", "Success", "Failure"]
    assert answers[2]["ErrorCode"] in ("invalid-dicom", "missing-uid")
    assert answers[2]["Path"] == "c.dcm"


def test_metadata_attachments_protection(node_process: NodeProcess) -> None:
    ids = upload(node_process, ct_bytes(0))
    study = f"/studies/{ids['ParentStudy']}"
    assert node_process.request("PUT", f"{study}/metadata/1024", "hello").status == 200
    assert node_process.request("GET", f"{study}/metadata/1024").body == b"hello"
    assert "1024" in node_process.request("GET", f"{study}/metadata").json()
    refused = node_process.request("PUT", f"{study}/metadata/LastUpdate", "x")
    assert refused.status == 403 and refused.json()["ErrorCode"] == "read-only-metadata"
    assert node_process.request("DELETE", f"{study}/metadata/1024").status == 200
    assert node_process.request("GET", f"{study}/metadata/1024").status == 404

    pdf = b"%PDF " + b"x" * 5000
    assert node_process.request("PUT", f"{study}/attachments/1025", pdf).status == 200
    base = f"{study}/attachments/1025"
    assert node_process.request("GET", f"{base}/data").body == pdf
    assert node_process.request("GET", f"{base}/size").body == b"5005"
    assert node_process.request("GET", f"{base}/is-compressed").body == b"1"
    assert node_process.request("POST", f"{base}/verify-md5", b"").status == 200
    assert node_process.request("GET", f"{study}/attachments").json() == ["1025"]
    assert node_process.request("DELETE", base).status == 200

    patient = f"/patients/{ids['ParentPatient']}/protected"
    assert node_process.request("GET", patient).body == b"0"
    assert node_process.request("PUT", patient, "1").status == 200
    assert node_process.request("GET", patient).body == b"1"
    assert node_process.request("PUT", patient, "yes").status == 400


def test_find_lookup_changes_statistics(node_process: NodeProcess) -> None:
    ids = upload(node_process, ct_bytes(0))
    upload(node_process, ct_bytes(0, patient=2))
    found = node_process.request(
        "POST",
        "/tools/find",
        {
            "Level": "Study",
            "Query": {"PatientName": "synthetic^patient1", "StudyDate": "2026-"},
        },
    ).json()
    assert found == [ids["ParentStudy"]]
    expanded = node_process.request(
        "POST",
        "/tools/find",
        {"Level": "Series", "Query": {"Modality": "CT"}, "Expand": True, "Limit": 1},
    ).json()
    assert len(expanded) == 1 and expanded[0]["MainDicomTags"]["Modality"] == "CT"
    uid = pydicom.dcmread(io.BytesIO(ct_bytes(0))).StudyInstanceUID
    assert node_process.request("POST", "/tools/lookup", uid).json() == [
        {"ID": ids["ParentStudy"], "Path": f"/studies/{ids['ParentStudy']}", "Type": "Study"}
    ]
    page = node_process.request("GET", "/changes?since=0&limit=3").json()
    assert len(page["Changes"]) == 3 and page["Done"] is False and page["Last"] == 3
    stats = node_process.request("GET", "/statistics").json()
    assert stats["CountPatients"] == 2 and stats["CountInstances"] == 2


# Every error's envelope is checked in-process (tests/node/rest/test_errors.py); here one
# domain error, one refused body and one routing error go through a real process.
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "GET",
            "/studies/00000000-00000000-00000000-00000000-00000000",
            None,
            404,
            "unknown-resource",
        ),
        ("POST", "/instances", b"", 400, "bad-request"),
    ],
)
def test_errors_are_json(
    node_process: NodeProcess, method: str, path: str, body: object, status: int, code: str
) -> None:
    response = node_process.request(method, path, body)  # type: ignore[arg-type]
    assert response.status == status
    error = response.json()
    assert error["HttpStatus"] == status and error["ErrorCode"] == code
    assert error["Message"] and "Traceback" not in error["Message"]
