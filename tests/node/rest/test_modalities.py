"""``/modalities`` over the node's registry, and ``/jobs``."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pacsnode.node.rest.context import REGISTRY
from pacsnode.node.settings import Modality
from tests.node.rest.conftest import MakeClient, assert_error, get_json, upload
from tests.node.server import free_port
from tests.storage.helpers import ct_bytes

VIEWER = {"AET": "VIEWER", "Host": "127.0.0.1", "Port": 104}


def _subset(shown: dict[str, Any], expected: dict[str, Any]) -> bool:
    return {key: shown.get(key) for key in expected} == expected


async def test_crud(client: TestClient) -> None:
    assert await get_json(client, "/modalities") == []
    assert (await client.put("/modalities/viewer", json=VIEWER)).status == 200
    # Orthanc's shapes: the operations under a modality, its configuration apart
    assert "store" in await get_json(client, "/modalities/viewer")
    configuration = await get_json(client, "/modalities/viewer/configuration")
    assert _subset(configuration, {**VIEWER, "Manufacturer": "Generic"})
    assert await get_json(client, "/modalities?expand") == {"viewer": configuration}
    # Orthanc's list form, and a port as text
    assert (await client.put("/modalities/a", json=["A", "host", "11112"])).status == 200
    assert await get_json(client, "/modalities") == ["a", "viewer"]
    shown = await get_json(client, "/modalities/a/configuration")
    assert _subset(shown, {"AET": "A", "Host": "host", "Port": 11112})
    assert (await client.delete("/modalities/viewer")).status == 200
    await assert_error(await client.get("/modalities/viewer"), 404, "not-found")
    await assert_error(await client.delete("/modalities/viewer"), 404, "not-found")


async def test_manufacturer_and_local_aet(client: TestClient) -> None:
    body = ["STORESCP", "localhost", 2000, "GenericNoWildcardInDates"]
    assert (await client.put("/modalities/tata", json=body)).status == 200
    expanded = await get_json(client, "/modalities?expand")
    assert expanded["tata"]["Manufacturer"] == "GenericNoWildcardInDates"
    obsolete = ["STORESCP", "localhost", 2000, "MedInria"]  # Orthanc takes it as Generic
    assert (await client.put("/modalities/toto", json=obsolete)).status == 200
    bad = ["STORESCP", "localhost", 2000, "InvalidManufacturerName"]
    await assert_error(await client.put("/modalities/toto", json=bad), 400, "bad-request")
    local = {**VIEWER, "LocalAet": "FROM-PACSNODE"}
    assert (await client.put("/modalities/local", json=local)).status == 200
    shown = await get_json(client, "/modalities/local/configuration")
    assert shown["LocalAet"] == "FROM-PACSNODE"


async def test_configured_modalities_are_listed(make_client: MakeClient) -> None:
    client = await make_client(modalities=(Modality("dest", "DEST", "127.0.0.1", 104),))
    expanded = await get_json(client, "/modalities?expand")
    assert list(expanded) == ["dest"]
    assert _subset(expanded["dest"], {"AET": "DEST", "Host": "127.0.0.1", "Port": 104})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"AET": "X", "Host": "h", "Port": 0}, "Port"),
        ({"AET": "X", "Host": "h", "Port": "http"}, "Port"),
        ({"AET": "X", "Host": "", "Port": 104}, "Host"),
        ({"AET": "", "Host": "h", "Port": 104}, "AET"),
        ({"AET": "SEVENTEEN-LETTERS", "Host": "h", "Port": 104}, "AET"),
        ({"AET": "   ", "Host": "h", "Port": 104}, "AET"),
        ({"AET": "A\\B", "Host": "h", "Port": 104}, "AET"),
        ({"AET": "ÉCHO", "Host": "h", "Port": 104}, "AET"),
        ("just text", "AET"),
    ],
)
async def test_bad_modalities(client: TestClient, body: Any, field: str) -> None:
    error = await assert_error(await client.put("/modalities/x", json=body), 400, "bad-request")
    assert field in error["Message"]
    assert await get_json(client, "/modalities") == []


async def test_the_registry_is_the_one_the_app_holds(client: TestClient) -> None:
    await client.put("/modalities/viewer", json=VIEWER)
    registry = client.app[REGISTRY]
    assert registry.modality_with_aet("VIEWER ") == Modality("viewer", "VIEWER", "127.0.0.1", 104)
    assert registry.calling_aets() == ["VIEWER"]
    await client.delete("/modalities/viewer")
    assert registry.modality_with_aet("VIEWER") is None


async def test_unreachable_modality(client: TestClient) -> None:
    gone = {"AET": "GONE", "Host": "127.0.0.1", "Port": free_port()}
    await client.put("/modalities/gone", json=gone)
    await assert_error(await client.post("/modalities/gone/echo"), 502, "dicom-network-error")
    ids = await upload(client, ct_bytes(0))
    failed = await client.post("/modalities/gone/store", data=ids["ID"])
    job = await failed.json()
    assert failed.status == 502 and job["State"] == "Failure" and job["ErrorDescription"]
    assert job["Type"] == "DicomModalityStore"
    assert job["ID"] in await get_json(client, "/jobs")
    assert (await get_json(client, "/jobs?expand"))[0]["ID"] == job["ID"]
    assert (await get_json(client, f"/jobs/{job['ID']}"))["State"] == "Failure"
    await assert_error(await client.post("/modalities/nobody/echo"), 404, "not-found")
    await assert_error(await client.post("/modalities/nobody/store", data="x"), 404, "not-found")


@pytest.mark.parametrize("body", [b"{not json", b"{}", b"[1, 2"])
async def test_store_refuses_bad_bodies(client: TestClient, body: bytes) -> None:
    await client.put("/modalities/viewer", json=VIEWER)
    response = await client.post("/modalities/viewer/store", data=body)
    await assert_error(response, 400, "bad-request")


async def test_store_of_an_unknown_resource(client: TestClient) -> None:
    await client.put("/modalities/viewer", json=VIEWER)
    response = await client.post("/modalities/viewer/store", json={"Resources": ["nope"]})
    await assert_error(response, 404, "unknown-resource")


async def test_unknown_jobs(client: TestClient) -> None:
    await assert_error(await client.get("/jobs/nope"), 404, "not-found")
    await assert_error(await client.post("/jobs/nope/cancel"), 404, "not-found")
    assert await get_json(client, "/jobs") == []
