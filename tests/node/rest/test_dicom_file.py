"""The instance's file over REST: given back as it came, its ``dicom`` attachment, its sizes."""

from __future__ import annotations

import hashlib

from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import assert_error, get_json, upload
from tests.storage.odd_files import odd_file, to_bytes


async def test_file_is_the_uploaded_file(client: TestClient) -> None:
    original = to_bytes(odd_file())
    ids = await upload(client, original)
    response = await client.get(f"/instances/{ids['ID']}/file")
    assert await response.read() == original
    instance = await get_json(client, f"/instances/{ids['ID']}")
    assert instance["FileSize"] == len(original)
    patient = await get_json(client, f"/patients/{ids['ParentPatient']}/statistics")
    assert int(patient["DicomUncompressedSize"]) == len(original)
    offset = await client.get(f"/instances/{ids['ID']}/metadata/PixelDataOffset")
    assert await offset.text() == str(original.index(b"\xe0\x7f\x10\x00"))


async def test_dicom_attachment_is_the_file_with_an_md5_etag(client: TestClient) -> None:
    original = to_bytes(odd_file())
    md5 = hashlib.md5(original).hexdigest()
    ids = await upload(client, original)
    base = f"/instances/{ids['ID']}/attachments/dicom"
    for what in ("", "/data", "/md5", "/size", "/compressed-size", "/is-compressed", "/info"):
        response = await client.get(f"{base}{what}")
        assert response.status == 200 and response.headers["ETag"] == f'"0-{md5}"'
        again = await client.get(f"{base}{what}", headers={"If-None-Match": f'"0-{md5}"'})
        assert again.status == 304 and await again.read() == b""
        other = await client.get(f"{base}{what}", headers={"If-None-Match": f'"1-{md5}"'})
        assert other.status == 200
    assert (await client.get(base, headers={"If-None-Match": '"tata"'})).status == 400
    assert await (await client.get(f"{base}/data")).read() == original
    info = await get_json(client, f"{base}/info")
    assert info["UncompressedSize"] == len(original) and info["ContentType"] == 1
    compressed = await (await client.get(f"{base}/is-compressed")).text()
    size = int(await (await client.get(f"{base}/compressed-size")).text())
    assert (compressed == "1") == (size < len(original)) and info["CompressedSize"] == size
    await assert_error(await client.post(f"{base}/uncompress"), 400, "bad-request")
    await assert_error(await client.delete(base), 403, "read-only-metadata")


async def test_a_bad_if_none_match_keeps_the_etag(client: TestClient) -> None:
    ids = await upload(client, to_bytes(odd_file()))
    base = f"/instances/{ids['ID']}/attachments/1024"
    assert (await client.put(base, data=b"hello")).status == 200
    response = await client.get(f"{base}/data", headers={"If-None-Match": "tata"})
    await assert_error(response, 400, "bad-request")
    assert response.headers["ETag"] == f'"0-{hashlib.md5(b"hello").hexdigest()}"'


async def test_tags_show_numbers_as_the_file_wrote_them(client: TestClient) -> None:
    ids = await upload(client, to_bytes(odd_file()))
    short = await get_json(client, f"/instances/{ids['ID']}/tags?short")
    assert short["0020,0011"] == "0005" and short["0018,0050"] == "0"
    assert short["7fe0,0010"] is None  # binary: null, in every format
    simple = await get_json(client, f"/instances/{ids['ID']}/simplified-tags")
    assert simple["SeriesNumber"] == "0005" and simple["PixelData"] is None


async def test_hierarchy_walks_take_the_tag_format(client: TestClient) -> None:
    ids = await upload(client, to_bytes(odd_file()))
    studies = await get_json(client, f"/patients/{ids['ParentPatient']}/studies?short")
    assert "0020,000d" in studies[0]["MainDicomTags"]
    patient = await get_json(client, f"/instances/{ids['ID']}/patient?full")
    assert patient["MainDicomTags"]["0010,0020"]["Name"] == "PatientID"


async def test_simplified_tags_are_ordered_by_name(client: TestClient) -> None:
    ids = await upload(client, to_bytes(odd_file()))
    response = await client.get(f"/instances/{ids['ID']}/tags?simplify")
    names = list(await response.json())
    assert names == sorted(names)


async def test_person_names_show_as_the_file_wrote_them(client: TestClient) -> None:
    dataset = odd_file()
    dataset.SpecificCharacterSet = "GB18030"
    dataset.PatientName = "Wang^XiaoDong=王^小东"
    # an empty phonetic group in place of the padding (pydicom would not write one):
    # DICOM JSON cannot keep it, the file does
    name = "王^小东".encode("gb18030")
    original = to_bytes(dataset).replace(name + b" ", name + b"=", 1)
    ids = await upload(client, original)
    simple = await get_json(client, f"/instances/{ids['ID']}/tags?simplify")
    assert simple["PatientName"] == "Wang^XiaoDong=王^小东="
