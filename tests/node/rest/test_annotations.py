"""Metadata, attachments and protection routes of every level."""

from __future__ import annotations

import hashlib

import pytest
from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import assert_error, get_json, upload
from tests.storage.helpers import ct_bytes


@pytest.mark.parametrize("level", ["patients", "studies", "series", "instances"])
async def test_metadata(client: TestClient, level: str) -> None:
    ids = await upload(client, ct_bytes(0))
    key = {"patients": "ParentPatient", "studies": "ParentStudy", "series": "ParentSeries"}
    base = f"/{level}/{ids[key.get(level, 'ID')]}/metadata"
    assert (await client.put(f"{base}/1024", data="hello")).status == 200
    got = await client.get(f"{base}/1024")
    assert await got.text() == "hello" and got.content_type == "text/plain"
    assert "1024" in await get_json(client, base)
    assert (await get_json(client, f"{base}?expand"))["1024"] == "hello"
    refused = await client.put(f"{base}/LastUpdate", data="x")
    await assert_error(refused, 403, "read-only-metadata")
    await assert_error(await client.put(f"{base}/1025", data=b"\xff\xfe"), 400, "bad-request")
    assert (await client.delete(f"{base}/1024")).status == 200
    assert (await client.get(f"{base}/1024")).status == 404


async def test_instance_metadata_says_where_it_came_from(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    metadata = await get_json(client, f"/instances/{ids['ID']}/metadata?expand")
    assert metadata["Origin"] == "RestApi" and metadata["IndexInSeries"] == "1"
    assert metadata["TransferSyntax"] == "1.2.840.10008.1.2.1"


async def test_metadata_of_a_resource_at_another_level(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    response = await client.get(f"/patients/{ids['ParentStudy']}/metadata")
    await assert_error(response, 404, "unknown-resource")


async def test_attachments(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    study = f"/studies/{ids['ParentStudy']}"
    pdf = b"%PDF " + b"x" * 5000
    stored = await client.put(f"{study}/attachments/1025", data=pdf)
    assert stored.status == 200
    # as Orthanc: an empty object, the revision and MD5 in the ETag
    assert await stored.json() == {}
    assert stored.headers["ETag"] == f'"0-{hashlib.md5(pdf).hexdigest()}"'
    base = f"{study}/attachments/1025"
    assert await get_json(client, f"{study}/attachments") == ["1025"]
    operations = await get_json(client, base)
    assert "data" in operations and "verify-md5" in operations
    assert await (await client.get(f"{base}/data")).read() == pdf
    compressed = await (await client.get(f"{base}/compressed-data")).read()
    assert 0 < len(compressed) < len(pdf)
    texts = {
        what: await (await client.get(f"{base}/{what}")).text()
        for what in ("size", "md5", "compressed-size", "compressed-md5", "is-compressed")
    }
    assert texts["size"] == "5005" and texts["is-compressed"] == "1"
    assert texts["md5"] == hashlib.md5(pdf).hexdigest()
    assert texts["compressed-size"] == str(len(compressed))
    assert texts["compressed-md5"] == hashlib.md5(compressed).hexdigest()
    assert (await client.post(f"{base}/verify-md5")).status == 200
    assert (await client.delete(base)).status == 200
    assert await get_json(client, f"{study}/attachments") == []
    await assert_error(await client.get(f"{base}/data"), 404, "not-found")


async def test_an_attachment_stored_uncompressed(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    base = f"/instances/{ids['ID']}/attachments/1026"
    assert (await client.put(f"{base}?compress=false", data=b"abc")).status == 200
    assert await (await client.get(f"{base}/is-compressed")).text() == "0"
    assert await (await client.get(f"{base}/compressed-data")).read() == b"abc"


async def test_protection(client: TestClient) -> None:
    ids = await upload(client, ct_bytes(0))
    patient = f"/patients/{ids['ParentPatient']}/protected"
    assert await (await client.get(patient)).text() == "0"
    assert (await client.put(patient, data="1")).status == 200
    assert await (await client.get(patient)).text() == "1"
    assert (await client.put(patient, data="0")).status == 200
    assert await (await client.get(patient)).text() == "0"
    await assert_error(await client.put(patient, data="yes"), 400, "bad-request")
