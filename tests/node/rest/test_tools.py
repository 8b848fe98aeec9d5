"""``/tools/find``, ``/tools/lookup``, ``/changes``, ``/statistics``, ``/system``."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import assert_error, get_json, upload
from tests.storage.helpers import ct_bytes


async def find(client: TestClient, body: dict[str, Any]) -> Any:
    response = await client.post("/tools/find", json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_find(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    other = await upload(client, ct_bytes(0, patient=2))
    query = {"PatientName": "synthetic^patient1", "StudyDate": "2026-"}
    assert await find(client, {"Level": "Study", "Query": query}) == [ids["ParentStudy"]]
    sensitive = {"Level": "Study", "Query": query, "CaseSensitive": True}
    assert await find(client, sensitive) == []
    assert await find(client, {"Level": "Patient", "Query": {"PatientName": "*2"}}) == [
        other["ParentPatient"]
    ]
    expanded = await find(
        client, {"Level": "Series", "Query": {"Modality": "CT"}, "Expand": True, "Limit": 1}
    )
    assert len(expanded) == 1 and expanded[0]["MainDicomTags"]["Modality"] == "CT"
    assert expanded[0]["Type"] == "Series"
    assert await find(client, {"Level": "Instance", "Query": {}, "Since": 1}) == [other["ID"]]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"Level": "Galaxy", "Query": {}}',
        b'{"Level": "Study", "Query": {"NoSuchTag": "x"}}',
        b'{"Level": "Study", "Query": {}, "Limit": -1}',
        b'{"Level": "Study", "Query": {}, "Since": true}',
    ],
)
async def test_find_refuses(client: TestClient, body: bytes) -> None:
    await assert_error(await client.post("/tools/find", data=body), 400, "bad-request")


async def test_lookup(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    dataset = pydicom.dcmread(io.BytesIO(ct_bytes(0)))
    for value, level, key, plural in (
        (dataset.PatientID, "Patient", "ParentPatient", "patients"),
        (dataset.StudyInstanceUID, "Study", "ParentStudy", "studies"),
        (dataset.SeriesInstanceUID, "Series", "ParentSeries", "series"),
        (dataset.SOPInstanceUID, "Instance", "ID", "instances"),
    ):
        answer = await (await client.post("/tools/lookup", data=value)).json()
        assert answer == [{"ID": ids[key], "Path": f"/{plural}/{ids[key]}", "Type": level}]
    assert await (await client.post("/tools/lookup", data="1.2.3.4")).json() == []
    for refused in ("", "PAT*", "1.2.?"):
        response = await client.post("/tools/lookup", data=refused)
        await assert_error(response, 400, "bad-request")


async def test_changes(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    page = await get_json(client, "/changes?since=0&limit=3")
    assert len(page["Changes"]) == 3 and page["Done"] is False and page["Last"] == 3
    kinds = [change["ChangeType"] for change in (await get_json(client, "/changes"))["Changes"]]
    assert "NewInstance" in kinds and "NewStudy" in kinds
    await client.delete(f"/patients/{ids['ParentPatient']}")
    everything = await get_json(client, "/changes?limit=100&deleted")  # the node's own feed
    assert everything["Done"] is True and everything["Changes"][-1]["ChangeType"] == "Deleted"
    assert (await get_json(client, "/changes?limit=100"))["Changes"] == []  # Orthanc's view
    await assert_error(await client.get("/changes?since=abc"), 400, "bad-request")


async def test_statistics(client: TestClient) -> None:
    await upload(client, ct_bytes(0))
    await upload(client, ct_bytes(0, patient=2))
    stats = await get_json(client, "/statistics")
    assert stats["CountPatients"] == 2 and stats["CountStudies"] == 2
    assert stats["CountSeries"] == 2 and stats["CountInstances"] == 2
    # Orthanc's shape: byte sizes are strings, MiB sizes numbers
    assert int(stats["TotalDiskSize"]) > 0 and int(stats["TotalUncompressedSize"]) > 0
    assert stats["TotalDiskSizeMB"] == int(stats["TotalDiskSize"]) // (1024 * 1024)
    assert stats["LastChange"] > 0 and stats["IndexDiskSize"] > 0


async def test_system(client: TestClient) -> None:
    system = await get_json(client, "/system")
    assert system["Name"] == "pacsnode" and system["ApiVersion"] == 1
    assert system["DicomAet"] == "PACSNODE" and system["DicomPort"] == 4242
    assert system["HttpPort"] == 8042 and system["MaximumStorageMode"] == "recycle"
    assert set(system) >= {"Version", "StorageCompression", "MaximumStorageSize"}
