"""``/patients``, ``/studies``, ``/series``, ``/instances``: uploads, listing, content, deletion."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from aiohttp.test_utils import TestClient
from pydicom.data import get_testdata_file

from tests.node.rest.conftest import assert_error, get_json, upload
from tests.storage.dicom_compare import differences
from tests.storage.helpers import ct_bytes

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_upload_answers_with_the_ids(client: TestClient) -> None:
    first = await upload(client, ct_bytes(0))
    assert set(first) == {"ID", "Path", "Status", "ParentPatient", "ParentStudy", "ParentSeries"}
    assert first["Status"] == "Success" and first["Path"] == f"/instances/{first['ID']}"
    again = await upload(client, ct_bytes(0))
    assert again["Status"] == "AlreadyStored" and again["ID"] == first["ID"]


async def test_zip_upload_answers_for_each_file(client: TestClient) -> None:
    cut_short = ct_bytes(2)[:200]  # DICOM that cannot be read: reported
    files = {"a.dcm": ct_bytes(0), "sub/": b"", "b.dcm": ct_bytes(1), "c.txt": b"no"}
    answers = await upload(client, zip_of({**files, "d.dcm": cut_short}))
    # c.txt is not DICOM at all: passed over, as Orthanc does
    assert [a["Status"] for a in answers] == ["Success", "Success", "Failure"]
    assert answers[2] == {
        "Path": "d.dcm",
        "Status": "Failure",
        "ErrorCode": answers[2]["ErrorCode"],
        "Message": answers[2]["Message"],
    }
    assert answers[2]["ErrorCode"] in ("invalid-dicom", "missing-uid")
    assert len(await get_json(client, "/instances")) == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "bad-request"),
        (b"definitely not dicom", "invalid-dicom"),
        (b"PK\x03\x04 but not a zip", "bad-request"),
    ],
)
async def test_bad_uploads(client: TestClient, body: bytes, code: str) -> None:
    await assert_error(await client.post("/instances", data=body), 400, code)


async def test_each_level_lists_and_shows(client: TestClient) -> None:
    first = await upload(client, ct_bytes(0))
    second = await upload(client, ct_bytes(1))
    other = await upload(client, ct_bytes(0, patient=2))
    patients = await get_json(client, "/patients")
    assert sorted(patients) == sorted({first["ParentPatient"], other["ParentPatient"]})
    assert len(await get_json(client, "/studies")) == 2
    assert len(await get_json(client, "/series")) == 2
    assert len(await get_json(client, "/instances")) == 3
    assert len(await get_json(client, "/instances?limit=2")) == 2
    assert await get_json(client, "/instances?since=2") == [other["ID"]]

    patient = await get_json(client, f"/patients/{first['ParentPatient']}")
    assert patient["Type"] == "Patient" and patient["Studies"] == [first["ParentStudy"]]
    assert patient["MainDicomTags"]["PatientID"] == "PAT00001" and not patient["IsStable"]
    study = await get_json(client, f"/studies/{first['ParentStudy']}")
    assert study["ParentPatient"] == first["ParentPatient"]
    assert study["PatientMainDicomTags"]["PatientName"] == "Synthetic^Patient1"
    assert study["Series"] == [first["ParentSeries"]] and study["IsStable"] is False
    series = await get_json(client, f"/series/{first['ParentSeries']}")
    assert series["ParentStudy"] == first["ParentStudy"] and series["Status"] == "Unknown"
    assert sorted(series["Instances"]) == sorted([first["ID"], second["ID"]])
    assert series["ExpectedNumberOfInstances"] is None
    instance = await get_json(client, f"/instances/{second['ID']}")
    assert instance["ParentSeries"] == first["ParentSeries"] and instance["IndexInSeries"] == 2
    assert instance["FileSize"] > 0 and instance["FileUuid"] and instance["LastUpdate"]
    assert set(instance) >= {"ID", "Type", "MainDicomTags", "LastUpdate"}


async def test_expand_shows_each_resource(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    for level, key in (("patients", "Studies"), ("studies", "Series"), ("series", "Instances")):
        expanded = await get_json(client, f"/{level}?expand")
        assert len(expanded) == 1 and key in expanded[0]
    expanded = await get_json(client, "/instances?expand=1")
    assert expanded[0]["ID"] == ids["ID"] and expanded[0]["IndexInSeries"] == 1
    assert await get_json(client, "/instances?expand=false") == [ids["ID"]]


async def test_unknown_or_wrong_level_ids(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    await assert_error(await client.get(f"/patients/{ids['ParentStudy']}"), 404, "unknown-resource")
    missing = "/studies/00000000-00000000-00000000-00000000-00000000"
    await assert_error(await client.get(missing), 404, "unknown-resource")
    await assert_error(await client.delete(missing), 404, "unknown-resource")
    await assert_error(await client.get("/instances?limit=-1"), 400, "bad-request")


async def test_delete_reports_the_remaining_ancestor(client: TestClient) -> None:
    first = await upload(client, ct_bytes(0))
    second = await upload(client, ct_bytes(1))
    answer = await (await client.delete(f"/instances/{first['ID']}")).json()
    assert answer == {
        "RemainingAncestor": {
            "ID": first["ParentSeries"],
            "Type": "Series",
            "Path": f"/series/{first['ParentSeries']}",
        }
    }
    answer = await (await client.delete(f"/instances/{second['ID']}")).json()
    assert answer == {"RemainingAncestor": None}
    assert await get_json(client, "/patients") == []


async def test_file_tags_and_frames(client: TestClient) -> None:
    ids = await upload(client, CT_SMALL.read_bytes())
    instance = f"/instances/{ids['ID']}"
    file = await client.get(f"{instance}/file")
    assert file.status == 200 and file.content_type == "application/dicom"
    copy = pydicom.dcmread(io.BytesIO(await file.read()))
    assert differences(pydicom.dcmread(CT_SMALL), copy) == []
    tags = await get_json(client, f"{instance}/tags")
    assert tags["0010,0020"] == {"Name": "PatientID", "Type": "String", "Value": "1CT1"}
    # binary, so Null, as Orthanc shows it in every format
    assert tags["7fe0,0010"] == {"Name": "PixelData", "Type": "Null", "Value": None}
    simple = await get_json(client, f"{instance}/simplified-tags")
    assert simple["PatientID"] == "1CT1" and simple["PixelData"] is None
    assert await get_json(client, f"{instance}/tags?simplify") == simple
    assert await get_json(client, f"{instance}/frames") == [0]
    raw = await client.get(f"{instance}/frames/0/raw")
    assert await raw.read() == copy.PixelData
    assert raw.headers["X-Transfer-Syntax"] == str(copy.file_meta.TransferSyntaxUID)
    await assert_error(await client.get(f"{instance}/frames/1/raw"), 404, "not-found")
    await assert_error(await client.get(f"{instance}/frames/x/raw"), 400, "bad-request")
    await assert_error(
        await client.get(f"/instances/{ids['ParentStudy']}/file"), 404, "unknown-resource"
    )


@pytest.mark.parametrize(
    ("level", "parent", "count"),
    [
        ("patients", "ParentPatient", 3),
        ("studies", "ParentStudy", 3),
        ("series", "ParentSeries", 2),
    ],
)
async def test_archives(client: TestClient, level: str, parent: str, count: int) -> None:
    ids = await upload(client, ct_bytes(0))
    await upload(client, ct_bytes(1))
    await upload(client, ct_bytes(0, study=1, series=2))
    response = await client.get(f"/{level}/{ids[parent]}/archive")
    assert response.status == 200 and response.content_type == "application/zip"
    assert ids[parent] in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(await response.read())) as archive:
        names = archive.namelist()
        assert len(names) == count and all(name.endswith(".dcm") for name in names)
        first = pydicom.dcmread(io.BytesIO(archive.read(names[0])))
        assert first.PatientID == "PAT00001"
    await assert_error(await client.get(f"/{level}/{ids['ID']}/archive"), 404, "unknown-resource")
