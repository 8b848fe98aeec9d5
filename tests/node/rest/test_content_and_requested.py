"""``/instances/{id}/content``, ``RequestedTags`` (computed tags included) and the tools
``/tools``, ``count-resources`` and ``bulk-content``, in-process, in Orthanc's shapes."""

from __future__ import annotations

from pathlib import Path
from xml.dom import minidom

import pydicom
from aiohttp.test_utils import TestClient
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.node.rest.conftest import assert_error, get_json, upload
from tests.node.rest.test_tag_formats import rich_instance
from tests.storage.helpers import ct_bytes

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
RLE_TWO_FRAMES = Path(get_testdata_file("SC_rgb_rle_2frame.dcm"))


async def test_content_walks_tags_and_items(client: TestClient) -> None:
    instance = f"/instances/{(await upload(client, rich_instance()))['ID']}/content"
    tags = await get_json(client, instance)
    assert "0010-0010" in tags and "0008-9215" in tags and "0008-3002" not in tags
    name = await client.get(f"{instance}/0010-0010")
    assert name.content_type == "application/octet-stream"
    assert (await name.read()) == b"DOE^JOHN"
    assert await get_json(client, f"{instance}/0008-9215") == ["0"]
    assert await get_json(client, f"{instance}/0008-9215/0") == [
        "0008-0100",
        "0008-0102",
        "0008-0104",
    ]
    code = await client.get(f"{instance}/0008-9215/0/0008-0100")
    assert (await code.read()) == b"121327"
    rows = await client.get(f"{instance}/0028-0010")
    assert (await rows.read()) == b"\x02\x00"  # the bytes as the file holds them
    for missing in ("0008-1011", "0008-9215/1", "0008-9215/0/0010-0010", "0010-0010/0"):
        await assert_error(await client.get(f"{instance}/{missing}"), 404, "not-found")
    for malformed in ("abc", "0008,9215", "0008-9215/x"):
        await assert_error(await client.get(f"{instance}/{malformed}"), 400, "bad-request")
    await assert_error(await client.get("/instances/nope/content"), 404, "unknown-resource")


async def test_pixel_data_items(client: TestClient) -> None:
    native = (await upload(client, CT_SMALL.read_bytes()))["ID"]
    pixels = f"/instances/{native}/content/7fe0-0010"
    assert await get_json(client, pixels) == ["0"]
    whole = await client.get(f"{pixels}/0")
    assert (await whole.read()) == pydicom.dcmread(CT_SMALL).PixelData
    await assert_error(await client.get(f"{pixels}/1"), 404, "not-found")

    rle = (await upload(client, RLE_TWO_FRAMES.read_bytes()))["ID"]
    pixels = f"/instances/{rle}/content/7fe0-0010"
    assert await get_json(client, pixels) == ["0", "1", "2"]  # offsets table, two frames
    original = pydicom.dcmread(RLE_TWO_FRAMES)
    frames = list(generate_frames(original.PixelData, number_of_frames=2))
    for number, frame in enumerate(frames, start=1):
        answer = await client.get(f"{pixels}/{number}")
        assert (await answer.read()).rstrip(b"\0") == frame.rstrip(b"\0")
    table = await (await client.get(f"{pixels}/0")).read()
    assert len(table) == 8 and table[:4] == b"\0\0\0\0"
    await assert_error(await client.get(f"{pixels}/0/0010-0010"), 404, "not-found")
    await assert_error(await client.get(f"{pixels}/x"), 400, "bad-request")


async def test_requested_tags_on_resources(client: TestClient) -> None:
    study_uid = generate_uid()
    first = await upload(client, rich_instance(study_uid=study_uid))
    await upload(client, rich_instance(study_uid=study_uid))
    asked = "PatientID;StudyDescription;SOPClassUID;DerivationCodeSequence;0008,0061;0020,1208"
    study = await get_json(client, f"/studies/{first['ParentStudy']}?requestedTags={asked}")
    assert study["RequestedTags"] == {
        "PatientID": "P1",
        "StudyDescription": "Study one",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
        "DerivationCodeSequence": [
            {"CodeValue": "121327", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Full"}
        ],
        "ModalitiesInStudy": "OT",
        "NumberOfStudyRelatedInstances": "2",
    }
    assert "RequestedTags" not in await get_json(client, f"/studies/{first['ParentStudy']}")
    series = await get_json(client, "/series?expand&requested-tags=0020,1209;0020,1208&short")
    assert [s["RequestedTags"] for s in series] == [{"0020,1209": "1"}] * 2  # no study count
    patient = await get_json(client, f"/patients/{first['ParentPatient']}?requestedTags=0020,1204")
    assert patient["RequestedTags"] == {"NumberOfPatientRelatedInstances": "2"}
    instance = await get_json(client, f"/instances/{first['ID']}?requestedTags=0008,0056&full")
    assert instance["RequestedTags"]["0008,0056"]["Value"] == "ONLINE"
    bad = await client.get(f"/instances/{first['ID']}?requestedTags=NoSuchTag")
    await assert_error(bad, 400, "bad-request")


async def test_find_and_count_with_requested_tags(client: TestClient) -> None:
    for index in range(3):
        await upload(client, ct_bytes(index))
    body = {
        "Level": "Study",
        "Query": {},
        "Expand": True,
        "RequestedTags": ["SOPClassesInStudy", "NumberOfStudyRelatedSeries", "0010,0020"],
    }
    found = await (await client.post("/tools/find", json=body)).json()
    assert set(found[0]["RequestedTags"]) == {
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "PatientID",
    }
    short = await (await client.post("/tools/find", json={**body, "Short": True})).json()
    assert "0008,0062" in short[0]["RequestedTags"] and "0008,0020" in short[0]["MainDicomTags"]
    count = await client.post("/tools/count-resources", json={"Level": "Instance", "Query": {}})
    assert await count.json() == {"Count": 3}
    refused = {"Level": "Study", "Query": {}, "CaseSensitive": True}
    answer = await client.post("/tools/count-resources", json=refused)
    await assert_error(answer, 400, "bad-request")
    bad = {**body, "RequestedTags": "PatientID"}
    await assert_error(await client.post("/tools/find", json=bad), 400, "bad-request")


async def test_bulk_content(client: TestClient) -> None:
    study_uid = generate_uid()
    first = await upload(client, rich_instance(study_uid=study_uid))
    second = await upload(client, rich_instance(study_uid=study_uid))
    chain = [first["ParentPatient"], first["ParentStudy"], first["ParentSeries"], first["ID"]]
    answer = await client.post("/tools/bulk-content", json={"Resources": [*chain, "unknown"]})
    found = await answer.json()
    assert [r["ID"] for r in found] == chain and all("Metadata" in r for r in found)
    both = {"Resources": [first["ID"], second["ID"]], "Level": "Study", "Metadata": False}
    found = await (await client.post("/tools/bulk-content", json=both)).json()
    assert [r["ID"] for r in found] == [first["ParentStudy"]] and "Metadata" not in found[0]
    down = {"Resources": [first["ParentPatient"]], "Level": "Instance", "Short": True}
    found = await (await client.post("/tools/bulk-content", json=down)).json()
    assert {r["ID"] for r in found} == {first["ID"], second["ID"]}
    assert found[0]["MainDicomTags"]["0008,0016"] == "1.2.840.10008.5.1.4.1.1.7"
    for bad in ({"Resources": "x"}, {"Resources": [], "Level": "Nope"}, [1]):
        answer = await client.post("/tools/bulk-content", json=bad)
        await assert_error(answer, 400, "bad-request")


async def test_tools_lists_its_tools_as_json_or_xml(client: TestClient) -> None:
    names = await get_json(client, "/tools")
    assert {"find", "count-resources", "bulk-content", "lookup", "dicom-conformance"} <= set(names)
    assert names == sorted(names)
    answer = await client.get("/tools", headers={"Accept": "application/xml"})
    assert answer.content_type == "application/xml"
    root = minidom.parseString(await answer.text()).getElementsByTagName("root")[0]
    assert [item.childNodes[0].data for item in root.getElementsByTagName("item")] == names
    conformance = await client.get("/tools/dicom-conformance")
    text = await conformance.text()
    assert len(text) > 1000 and "1.2.840.10008.1.1" in text and "C-STORE" in text
