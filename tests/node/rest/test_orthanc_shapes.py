"""Behaviours Orthanc's integration suite and client libraries rely on, in-process.

Paths (``//x``, trailing slashes, method override), the exports log, the run-time
settings under ``/tools``, walks up and down the hierarchy, per-resource
statistics, tag views, and the find limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from pacsnode.node.rest.context import CORE
from pacsnode.node.settings import FindSettings
from tests.node.rest.conftest import MakeClient, assert_error, get_json, upload
from tests.node.server import free_port
from tests.storage.helpers import ct_bytes


async def _three_instances(client: TestClient) -> list[dict[str, Any]]:
    return [await upload(client, ct_bytes(index, series=1 + index % 2)) for index in range(3)]


async def _raw(client: TestClient, method: str, path: str) -> Any:
    """A request whose path is sent as written (the test client refuses ``//x``)."""
    url = str(client.make_url("/")).rstrip("/") + path
    async with client.session.request(method, url) as response:
        return response.status, await response.json()


async def test_orthanc_paths(client: TestClient) -> None:
    status, system = await _raw(client, "GET", "//system")
    assert status == 200 and "Version" in system
    stored = await upload(client, ct_bytes(0))
    assert await get_json(client, "/patients/") == [stored["ParentPatient"]]
    assert await _raw(client, "GET", "//patients//") == (200, [stored["ParentPatient"]])
    assert (await _raw(client, "DELETE", "//exports"))[0] == 200
    overridden = await client.post(
        f"/patients/{stored['ParentPatient']}", headers={"X-HTTP-Method-Override": "DELETE"}
    )
    assert overridden.status == 200
    assert await get_json(client, "/patients") == []
    status, error = await _raw(client, "GET", "//nothing/here/")
    assert status == 404 and error["Uri"] == "//nothing/here/"


async def test_changes_last(client: TestClient) -> None:
    assert (await get_json(client, "/changes?last")) == {"Changes": [], "Done": True, "Last": 0}
    await upload(client, ct_bytes(0))
    page = await get_json(client, "/changes?last")
    assert len(page["Changes"]) == 1 and page["Changes"][0]["Seq"] == page["Last"]
    assert page["Changes"][0]["ChangeType"] == "NewPatient"  # Orthanc's order: upwards


async def test_changes_as_orthanc_shows_them(client: TestClient) -> None:
    stored = await upload(client, ct_bytes(0))
    kinds = [c["ChangeType"] for c in (await get_json(client, "/changes"))["Changes"]]
    assert kinds == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    assert (await client.delete(f"/patients/{stored['ParentPatient']}")).status == 200
    shown = await get_json(client, "/changes")
    assert shown["Changes"] == [] and shown["Done"] and shown["Last"] > 0
    assert (await get_json(client, "/changes?last"))["Changes"] == []
    everything = await get_json(client, "/changes?deleted")  # the node's own feed
    deleted = [c for c in everything["Changes"] if c["ChangeType"] == "Deleted"]
    assert [c["ResourceType"] for c in deleted] == ["Patient"]  # with the UIDs of what went
    assert all(c["Reason"] == "Request" for c in deleted)
    await upload(client, ct_bytes(0))  # the same ids again: only the new changes show
    again = [c["ChangeType"] for c in (await get_json(client, "/changes"))["Changes"]]
    assert again == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]


async def test_run_time_settings(client: TestClient) -> None:
    assert (await client.get("/tools/default-encoding")).status == 200
    assert await (await client.get("/tools/default-encoding")).text() == "Latin1"
    assert await (await client.put("/tools/default-encoding", data="Windows1251")).text() == (
        "Windows1251"
    )
    assert await (await client.get("/tools/default-encoding")).text() == "Windows1251"
    await assert_error(await client.put("/tools/default-encoding", data="nope"), 400, "bad-request")

    three = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
    answer = await client.put("/tools/accepted-transfer-syntaxes", json=three)
    assert sorted(await answer.json()) == sorted(three)
    assert sorted(await get_json(client, "/tools/accepted-transfer-syntaxes")) == sorted(three)
    everything = await client.put("/tools/accepted-transfer-syntaxes", data="*")
    assert len(await everything.json()) >= 20

    bad = await client.put("/tools/unknown-sop-class-accepted", data="nope")
    await assert_error(bad, 400, "bad-request")
    assert await (await client.put("/tools/unknown-sop-class-accepted", data="true")).text() == "1"
    assert await get_json(client, "/tools/unknown-sop-class-accepted") == 1

    lua = await client.post("/tools/execute-script", data="print(1)")
    error = await assert_error(lua, 400, "no-lua")
    assert "Lua" in error["Message"]


async def test_settings_survive_a_restart(make_client: MakeClient) -> None:
    client = await make_client()
    await client.put("/tools/default-encoding", data="Cyrillic")
    await client.close()
    client.app[CORE].close()
    again = await make_client()
    assert await (await again.get("/tools/default-encoding")).text() == "Cyrillic"


async def test_statistics_are_orthanc_shaped(client: TestClient) -> None:
    stored = await _three_instances(client)
    total = await get_json(client, "/statistics")
    assert isinstance(total["TotalDiskSize"], str) and int(total["TotalDiskSize"]) > 0
    patient = await get_json(client, f"/patients/{stored[0]['ParentPatient']}/statistics")
    assert (patient["CountStudies"], patient["CountSeries"], patient["CountInstances"]) == (1, 2, 3)
    assert patient["DiskSize"] == total["TotalDiskSize"]
    series = await get_json(client, f"/series/{stored[0]['ParentSeries']}/statistics")
    assert series["CountInstances"] == 2 and "CountSeries" not in series
    uncompressed = 0
    for series_id in await get_json(client, "/series"):
        shown = await get_json(client, f"/series/{series_id}/statistics")
        uncompressed += int(shown["UncompressedSize"])
    assert uncompressed == int(total["TotalUncompressedSize"])
    await assert_error(
        await client.get(f"/studies/{stored[0]['ParentPatient']}/statistics"),
        404,
        "unknown-resource",
    )


async def test_walks_up_and_down(client: TestClient) -> None:
    stored = await _three_instances(client)
    instance, study = stored[0]["ID"], stored[0]["ParentStudy"]
    assert (await get_json(client, f"/instances/{instance}/study"))["ID"] == study
    assert (await get_json(client, f"/instances/{instance}/patient"))["Type"] == "Patient"
    series = await get_json(client, f"/instances/{instance}/series")
    assert series["ID"] == stored[0]["ParentSeries"]
    below = await get_json(client, f"/studies/{study}/instances")
    assert sorted(i["ID"] for i in below) == sorted(s["ID"] for s in stored)
    assert len(await get_json(client, f"/patients/{stored[0]['ParentPatient']}/series")) == 2
    await assert_error(await client.get(f"/instances/{instance}/instances"), 400, "bad-request")


async def test_tag_views(client: TestClient) -> None:
    stored = await _three_instances(client)
    study = stored[0]["ParentStudy"]
    every = await get_json(client, f"/studies/{study}/instances-tags?simplify")
    assert sorted(every) == sorted(s["ID"] for s in stored)
    assert all(tags["StudyInstanceUID"] for tags in every.values())
    shared = await get_json(client, f"/studies/{study}/shared-tags?simplify")
    assert "StudyInstanceUID" in shared and "SOPInstanceUID" not in shared
    full = await get_json(client, f"/studies/{study}/shared-tags")
    assert full["0020,000d"]["Name"] == "StudyInstanceUID"
    module = await get_json(client, f"/studies/{study}/module?simplify")
    assert "StudyInstanceUID" in module and "PatientName" not in module
    patient_module = await get_json(client, f"/studies/{study}/module-patient?simplify")
    assert "PatientName" in patient_module and "StudyInstanceUID" not in patient_module


async def test_find_limits_apply_when_no_limit_is_asked(make_client: MakeClient) -> None:
    client = await make_client(find=FindSettings(limit_results=1, limit_instances=2))
    await _three_instances(client)
    query = {"Query": {"PatientID": "*"}}
    found = await client.post("/tools/find", json={"Level": "Instance", **query})
    assert len(await found.json()) == 2
    found = await client.post("/tools/find", json={"Level": "Series", **query})
    assert len(await found.json()) == 1
    found = await client.post("/tools/find", json={"Level": "Instance", "Limit": 3, **query})
    assert len(await found.json()) == 3


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[str]]]:
    """A real DICOM store SCP (pynetdicom) on a free port; yields (port, SOP UIDs received)."""
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="RECEIVER")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    yield port, received
    server.shutdown()


async def test_stores_to_a_modality_are_logged_in_exports(
    client: TestClient, receiver: tuple[int, list[str]]
) -> None:
    port, received = receiver
    empty = await get_json(client, "/exports")
    assert empty == {"Exports": [], "Done": True, "Last": 0}
    stored = await _three_instances(client)
    body = {"AET": "RECEIVER", "Host": "127.0.0.1", "Port": port}
    assert (await client.put("/modalities/dest", json=body)).status == 200
    for resource in (stored[0]["ID"], stored[0]["ParentSeries"], stored[0]["ParentPatient"]):
        job = await client.post("/modalities/dest/store", data=resource)
        assert job.status == 200, await job.text()
    assert len(received) == 1 + 2 + 3
    log = await get_json(client, "/exports")
    kinds = [entry["ResourceType"] for entry in log["Exports"]]
    assert kinds == ["Instance", "Series", "Patient"] and log["Done"]
    first = log["Exports"][0]
    assert len(first) == 10 and first["RemoteModality"] == "dest"
    assert first["Path"] == f"/instances/{stored[0]['ID']}" and first["SOPInstanceUID"]
    assert len(log["Exports"][2]) == 7  # a patient: only its PatientID among the UIDs
    page = await get_json(client, "/exports?limit=1&since=0")
    assert len(page["Exports"]) == 1 and not page["Done"]
    last = await get_json(client, "/exports?last")
    assert last["Exports"][0]["Seq"] == last["Last"] == log["Last"]
    assert (await client.delete("/exports")).status == 200
    assert (await get_json(client, "/exports"))["Exports"] == []


async def test_dicom_echo_to_a_modality_in_the_body(
    client: TestClient, receiver: tuple[int, list[str]]
) -> None:
    port, _ = receiver
    answer = await client.post("/tools/dicom-echo", json=["RECEIVER", "127.0.0.1", port])
    assert answer.status == 200, await answer.text()
    unreachable = await client.post("/tools/dicom-echo", json=["X", "127.0.0.1", free_port()])
    await assert_error(unreachable, 502, "dicom-network-error")


async def test_peers_in_orthanc_forms(client: TestClient) -> None:
    assert (await client.put("/peers/toto", json=["http://localhost:8042/"])).status == 200
    tata = {"Url": "http://localhost:8042/", "Username": "user", "Password": "pass"}
    assert (await client.put("/peers/tata", json={**tata, "RemoteSelf": "self"})).status == 200
    expanded = await get_json(client, "/peers?expand")
    shown = expanded["tata"]
    assert (shown["Url"], shown["Username"], shown["RemoteSelf"]) == (tata["Url"], "user", "self")
    assert shown["Password"] is None and shown["Pkcs11"] is False  # no secret is shown
    assert "store" in await get_json(client, "/peers/tata")
    assert await get_json(client, "/peers/tata/configuration") == shown
    for wrong in (["http://localhost:8042/", "a"], ["http://localhost:8042/", "a", "b", "c"]):
        await assert_error(await client.put("/peers/toto", json=wrong), 400, "bad-request")
    assert await get_json(client, "/peers?expand=false") == ["tata", "toto"]
    for name in ("toto", "tata"):
        assert (await client.delete(f"/peers/{name}")).status == 200
        await assert_error(await client.get(f"/peers/{name}"), 404, "not-found")


async def _zip_names(response: Any) -> list[str]:
    import io
    import zipfile

    assert response.status == 200, await response.text()
    return zipfile.ZipFile(io.BytesIO(await response.read())).namelist()


async def test_archives_of_several_resources(client: TestClient) -> None:
    stored = await _three_instances(client)
    other = await upload(client, ct_bytes(0, patient=2))
    assert await _zip_names(await client.post("/tools/create-archive", json=[])) == []
    patient = stored[0]["ParentPatient"]
    overlapping = [patient, stored[0]["ParentStudy"], other["ParentSeries"]]
    names = await _zip_names(await client.post("/tools/create-archive", json=overlapping))
    assert len(names) == 4  # the patient's study is not written twice
    assert all(name.count("/") == 3 and name.endswith(".dcm") for name in names)
    by_body = await client.post("/tools/create-archive", json={"Resources": [other["ID"]]})
    assert len(await _zip_names(by_body)) == 1
    posted = await client.post(f"/series/{stored[0]['ParentSeries']}/archive", json={})
    assert len(await _zip_names(posted)) == 2
    missing = await client.post("/tools/create-archive", json=["0" * 8 + "-" + "0" * 32])
    await assert_error(missing, 404, "unknown-resource")


async def test_an_archive_made_by_a_job(client: TestClient) -> None:
    import asyncio

    stored = await _three_instances(client)
    body = {"Resources": [stored[0]["ParentStudy"]], "Synchronous": False}
    started = await get_json_post(client, "/tools/create-archive", body)
    for _ in range(100):
        job = await get_json(client, f"/jobs/{started['ID']}")
        if job["State"] in ("Success", "Failure"):
            break
        await asyncio.sleep(0.05)
    assert job["State"] == "Success" and job["Content"]["InstancesCount"] == 3
    assert len(await _zip_names(await client.get(f"/jobs/{started['ID']}/archive"))) == 3
    second = await get_json_post(client, "/tools/create-archive", body)
    for _ in range(100):
        if (await get_json(client, f"/jobs/{second['ID']}"))["State"] == "Success":
            break
        await asyncio.sleep(0.05)
    # only the newest archive is kept: each is a whole copy of what it holds
    await assert_error(await client.get(f"/jobs/{started['ID']}/archive"), 404, "not-found")


async def get_json_post(client: TestClient, path: str, body: Any) -> Any:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_store_straight_to_a_modality(
    client: TestClient, receiver: tuple[int, list[str]]
) -> None:
    port, received = receiver
    body = {"AET": "RECEIVER", "Host": "127.0.0.1", "Port": port}
    assert (await client.put("/modalities/dest", json=body)).status == 200
    bad = await client.post("/modalities/dest/store-straight", data=b"nope")
    await assert_error(bad, 400, "bad-request")
    answer = await get_json_post_raw(client, "/modalities/dest/store-straight", ct_bytes(0))
    assert answer["SOPInstanceUID"] == received[0] and answer["SOPClassUID"]
    assert await get_json(client, "/instances") == []  # sent as it is, not stored here


async def get_json_post_raw(client: TestClient, path: str, body: bytes) -> Any:
    response = await client.post(path, data=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_revisions_of_metadata_and_attachments(make_client: MakeClient) -> None:
    import dataclasses

    from pacsnode.node.config import load_config

    http = dataclasses.replace(load_config().http, check_revisions=True)
    client = await make_client(http=http)
    instance = (await upload(client, ct_bytes(0)))["ID"]
    path = f"/instances/{instance}/metadata/1024"
    created = await client.put(path, data="hello")
    assert (
        created.status == 200 and created.headers["ETag"] == '"0-5d41402abc4b2a76b9719d911017c592"'
    )
    cached = await client.get(path, headers={"If-None-Match": created.headers["ETag"]})
    assert cached.status == 304 and await cached.read() == b""
    await assert_error(
        await client.get(path, headers={"If-None-Match": '"aaa"'}), 400, "bad-request"
    )
    await assert_error(await client.put(path, data="x"), 409, "revision-conflict")
    await assert_error(await client.delete(path), 409, "revision-conflict")
    changed = await client.put(path, data="hello2", headers={"If-Match": created.headers["ETag"]})
    assert changed.headers["ETag"].startswith('"1-')
    stale = await client.put(path, data="x", headers={"If-Match": created.headers["ETag"]})
    await assert_error(stale, 409, "revision-conflict")
    gone = await client.delete(path, headers={"If-Match": changed.headers["ETag"]})
    assert gone.status == 200
    await assert_error(await client.get(path), 404, "not-found")

    attachment = f"/instances/{instance}/attachments/1025"
    put = await client.put(attachment, data=b"report")
    assert put.status == 200 and put.headers["ETag"].startswith('"0-')
    info = await client.get(attachment)
    assert info.headers["ETag"] == put.headers["ETag"]
    await assert_error(await client.delete(attachment), 409, "revision-conflict")
    assert (
        await client.delete(attachment, headers={"If-Match": put.headers["ETag"]})
    ).status == 200


async def test_series_status_limit_zero_and_clearing_changes(client: TestClient) -> None:
    from tests.storage.helpers import ct_instance, to_bytes

    for index in range(2):
        dataset = ct_instance(index)
        dataset.ImagesInAcquisition = 2
        stored = await upload(client, to_bytes(dataset))
        series = await get_json(client, f"/series/{stored['ParentSeries']}")
        assert series["Status"] == ("Missing", "Complete")[index]
        assert series["ExpectedNumberOfInstances"] == 2
    kinds = [c["ChangeType"] for c in (await get_json(client, "/changes"))["Changes"]]
    assert kinds.count("CompletedSeries") == 1
    assert await get_json(client, "/patients?limit=0") == []
    assert len(await get_json(client, "/instances")) == 2
    last = (await get_json(client, "/changes"))["Last"]
    assert (await client.delete("/changes")).status == 200
    cleared = await get_json(client, "/changes")
    assert cleared["Changes"] == [] and cleared["Last"] == last  # numbering goes on


async def test_the_dicom_attachment_is_the_regenerated_file(client: TestClient) -> None:
    import hashlib

    instance = (await upload(client, ct_bytes(0)))["ID"]
    assert (await get_json(client, f"/instances/{instance}/attachments"))[0] == "dicom"
    assert await get_json(client, f"/instances/{instance}/attachments?full") == {"dicom": 1}
    patient = (await get_json(client, "/patients"))[0]
    assert await get_json(client, f"/patients/{patient}/attachments") == []
    data = await (await client.get(f"/instances/{instance}/file")).read()
    base = f"/instances/{instance}/attachments/dicom"
    assert await (await client.get(f"{base}/data")).read() == data
    assert await (await client.get(f"{base}/size")).text() == str(len(data))
    assert await (await client.get(f"{base}/md5")).text() == hashlib.md5(data).hexdigest()
    # compressed as the archive is: see tests/node/rest/test_dicom_file.py
    assert await (await client.get(f"{base}/is-compressed")).text() in ("0", "1")
    assert (await client.post(f"{base}/verify-md5")).status == 200
    await assert_error(await client.delete(base), 403, "read-only-metadata")


async def test_modalities_and_peers_changed_over_rest_survive_a_restart(
    make_client: MakeClient,
) -> None:
    from pacsnode.node.settings import Modality

    configured = (Modality("fromtoml", "TOML", "127.0.0.1", 104),)
    client = await make_client(modalities=configured)
    viewer = {"AET": "VIEWER", "Host": "127.0.0.1", "Port": 105, "LocalAet": "US"}
    assert (await client.put("/modalities/viewer", json=viewer)).status == 200
    assert (await client.delete("/modalities/fromtoml")).status == 200
    peer = {"Url": "http://127.0.0.1:9/", "Username": "u", "Password": "p"}
    assert (await client.put("/peers/legacy", json=peer)).status == 200
    await client.close()
    client.app[CORE].close()

    again = await make_client(modalities=configured)
    assert await get_json(again, "/modalities") == ["viewer"]  # the deletion is kept too
    shown = await get_json(again, "/modalities/viewer/configuration")
    assert (shown["Port"], shown["LocalAet"]) == (105, "US")
    assert await get_json(again, "/peers") == ["legacy"]
    assert (await get_json(again, "/peers/legacy/configuration"))["Username"] == "u"


async def test_a_browser_upload_form(client: TestClient) -> None:
    """Orthanc Explorer's upload: multipart/form-data, spaces where a browser may put them."""
    boundary = "----WebKitFormBoundarypJDNQqJPoXiorRmQ"

    def part(data: bytes, name: str) -> bytes:
        head = f'--{boundary}\r\nContent-Disposition  :   form-data  ; name ="files[]"   ;'
        return f'{head} filename = "{name}"  \r\n\r\n'.encode() + data + b"\r\n"

    body = part(ct_bytes(0), "a.dcm") + part(ct_bytes(1), "b.dcm") + f"--{boundary}--".encode()
    content_type = f"multipart/form-data   ;    boundary  =  {boundary}  "
    answer = await client.post("/instances", data=body, headers={"Content-Type": content_type})
    assert answer.status == 200, await answer.text()
    assert [a["Status"] for a in await answer.json()] == ["Success", "Success"]
    assert len(await get_json(client, "/instances")) == 2
