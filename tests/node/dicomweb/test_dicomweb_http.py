"""QIDO-RS, WADO-RS and STOW-RS over HTTP, in-process over a real core and store."""

from __future__ import annotations

import gzip
import json
import time
import zipfile

import pydicom
from aiohttp.test_utils import TestClient

from pacsnode.node.rest.context import CORE
from tests.node.dicomweb.conftest import CORPUS, corpus_dataset, corpus_path, source_frames
from tests.node.rest.conftest import upload

ROOT = "/dicom-web"


async def _store_corpus(client: TestClient) -> dict[str, pydicom.Dataset]:
    stored = {}
    for name in CORPUS:
        await upload(client, corpus_path(name).read_bytes())
        stored[name] = corpus_dataset(name)
    return stored


def _instance_url(dataset: pydicom.Dataset) -> str:
    return (
        f"{ROOT}/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}"
        f"/instances/{dataset.SOPInstanceUID}"
    )


def _parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    boundary = next(
        p.split("=", 1)[1].strip('"')
        for p in content_type.split(";")
        if p.strip().startswith("boundary=")
    )
    marker = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(marker)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        parts.append((headers, payload[:-2]))
    return parts


async def test_qido_finds_studies_series_and_instances(client: TestClient):
    stored = await _store_corpus(client)
    ct = stored["CT_small.dcm"]
    response = await client.get(f"{ROOT}/studies", headers={"Accept": "application/dicom+json"})
    assert response.status == 200 and response.content_type == "application/dicom+json"
    studies = await response.json()
    assert len(studies) == len({d.StudyInstanceUID for d in stored.values()})
    found = await (
        await client.get(f"{ROOT}/studies?StudyInstanceUID={ct.StudyInstanceUID}")
    ).json()
    assert len(found) == 1
    study = found[0]
    assert study["0020000D"]["Value"] == [ct.StudyInstanceUID]
    assert study["00201208"]["Value"] == [1] and study["00201206"]["Value"] == [1]
    assert study["00080061"]["Value"] == [ct.Modality]
    assert study["00081190"]["Value"][0].endswith(f"{ROOT}/studies/{ct.StudyInstanceUID}")
    by_name = await (
        await client.get(f"{ROOT}/studies?PatientName={str(ct.PatientName)[:3].lower()}*")
    ).json()
    assert ct.StudyInstanceUID in [s["0020000D"]["Value"][0] for s in by_name]
    series = await (await client.get(f"{ROOT}/studies/{ct.StudyInstanceUID}/series")).json()
    assert [s["0020000E"]["Value"][0] for s in series] == [ct.SeriesInstanceUID]
    instances = await (
        await client.get(
            f"{ROOT}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances"
        )
    ).json()
    assert instances[0]["00080018"]["Value"] == [ct.SOPInstanceUID]
    assert instances[0]["00280010"]["Value"] == [ct.Rows]  # from the stored metadata
    everything = await (await client.get(f"{ROOT}/instances?includefield=all")).json()
    assert len(everything) == len(stored)


async def test_qido_pages_until_an_empty_page(client: TestClient):
    stored = await _store_corpus(client)
    seen: list[str] = []
    offset = 0
    while True:
        response = await client.get(f"{ROOT}/instances?limit=1&offset={offset}")
        page = await response.json()
        if not page:
            break
        seen.extend(item["00080018"]["Value"][0] for item in page)
        offset += len(page)
        assert offset <= len(stored), "paging must terminate"
    assert sorted(seen) == sorted(d.SOPInstanceUID for d in stored.values())


async def test_qido_refuses_bad_queries_with_400(client: TestClient):
    for query in ("limit=-3", "NoSuchKeyword=1", "StudyDate=notadate-"):
        response = await client.get(f"{ROOT}/studies?{query}")
        if query.startswith("StudyDate"):
            assert response.status in (200, 400)
            continue
        assert response.status == 400, query
        assert "Message" in await response.json()
    response = await client.get(f"{ROOT}/studies/not..a..uid/series")
    assert response.status == 400


async def test_study_metadata_is_the_stored_gzip_entry(client: TestClient):
    stored = await _store_corpus(client)
    ct = stored["CT_small.dcm"]
    url = f"{ROOT}/studies/{ct.StudyInstanceUID}/metadata"
    response = await client.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    items = json.loads(gzip.decompress(await response.read()))
    assert items[0]["00080018"]["Value"] == [ct.SOPInstanceUID]
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert json.loads(await plain.read()) == items
    series_response = await client.get(
        f"{ROOT}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/metadata",
        headers={"Accept-Encoding": "gzip"},
    )
    assert series_response.headers["Content-Encoding"] == "gzip"  # packed on the way out
    series = await series_response.json()
    assert series[0]["7FE00010"]["BulkDataURI"].startswith("http://")
    missing = await client.get(f"{ROOT}/studies/1.2.3.4.5.6/metadata")
    assert missing.status == 404


async def test_frames_are_the_stored_bytes_single_multi_and_compressed(client: TestClient):
    stored = await _store_corpus(client)
    for dataset in stored.values():
        expected = source_frames(dataset)
        base = _instance_url(dataset)
        numbers = list(range(1, len(expected) + 1))
        response = await client.get(
            f"{base}/frames/{','.join(map(str, numbers))}",
            headers={
                "Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"
            },
        )
        assert response.status == 200, await response.text()
        parts = _parts(await response.read(), response.headers["Content-Type"])
        assert [payload for _, payload in parts] == expected
        syntax = str(dataset.file_meta.TransferSyntaxUID)
        assert all(f"transfer-syntax={syntax}" in headers["Content-Type"] for headers, _ in parts)
        last = await client.get(f"{base}/frames/{len(expected)}")
        assert _parts(await last.read(), last.headers["Content-Type"])[0][1] == expected[-1]
    beyond = await client.get(f"{base}/frames/{len(expected) + 1}")
    assert beyond.status == 404


async def test_a_single_frame_can_come_as_a_bare_body(client: TestClient):
    stored = await _store_corpus(client)
    jpeg = stored["examples_ybr_color.dcm"]
    base = _instance_url(jpeg)
    response = await client.get(f"{base}/frames/2", headers={"Accept": "image/jpeg"})
    assert response.status == 200 and response.content_type == "image/jpeg"
    assert await response.read() == source_frames(jpeg)[1]
    refused = await client.get(
        f"{base}/frames/2", headers={"Accept": "multipart/related; type=application/octet-stream"}
    )
    assert refused.status == 406
    assert "transfer-syntax=*" in (await refused.json())["Message"]


async def test_instances_are_retrieved_as_p10_parts(client: TestClient):
    stored = await _store_corpus(client)
    rle = stored["SC_rgb_rle_2frame.dcm"]
    response = await client.get(
        f"{ROOT}/studies/{rle.StudyInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert response.status == 200
    parts = _parts(await response.read(), response.headers["Content-Type"])
    assert len(parts) == 1
    copy = pydicom.dcmread(__import__("io").BytesIO(parts[0][1]))
    assert copy.SOPInstanceUID == rle.SOPInstanceUID
    assert copy.file_meta.TransferSyntaxUID == rle.file_meta.TransferSyntaxUID


async def test_stow_stores_and_answers_per_instance(client: TestClient):
    boundary = "stow-test-boundary"
    ct, mr = corpus_path("CT_small.dcm").read_bytes(), corpus_path("MR_small.dcm").read_bytes()
    body = (
        b"".join(
            b"--"
            + boundary.encode()
            + b"\r\nContent-Type: application/dicom\r\n\r\n"
            + data
            + b"\r\n"
            for data in (ct, mr, b"not dicom at all")
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )
    response = await client.post(
        f"{ROOT}/studies",
        data=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert len(answer["00081199"]["Value"]) == 2
    assert len(answer["00081198"]["Value"]) == 1
    found = await (await client.get(f"{ROOT}/instances")).json()
    assert len(found) == 2
    # a study UID in the path that the instance does not belong to: refused (409)
    wrong = await client.post(
        f"{ROOT}/studies/1.2.3.999",
        data=b"--b\r\nContent-Type: application/dicom\r\n\r\n" + ct + b"\r\n--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert wrong.status == 409
    assert (await wrong.json())["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    unsupported = await client.post(
        f"{ROOT}/studies", data=ct, headers={"Content-Type": "application/dicom"}
    )
    assert unsupported.status == 415


async def test_cors_is_off_by_default_and_answers_configured_origins(make_client):
    client = await make_client(dicomweb={"cors_origins": ("https://viewer.example",)})
    preflight = await client.options(
        f"{ROOT}/studies",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
    response = await client.get(f"{ROOT}/studies", headers={"Origin": "https://viewer.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
    other = await client.get(f"{ROOT}/studies", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_a_sealed_studys_metadata_is_its_zip_entry_byte_for_byte(client: TestClient):
    stored = await _store_corpus(client)
    ct = stored["CT_small.dcm"]
    core = client.server.app[CORE]
    assert ct.StudyInstanceUID in core.seal_quiet_studies(now=time.time() + 3600)
    response = await client.get(
        f"{ROOT}/studies/{ct.StudyInstanceUID}/metadata",
        headers={"Accept-Encoding": "gzip"},
        auto_decompress=False,
    )
    with core.open_study_zip(ct.StudyInstanceUID, None) as handle:
        entry = zipfile.ZipFile(handle).read(f"studies/{ct.StudyInstanceUID}/metadata")
    assert await response.read() == entry
    frame = await client.get(f"{_instance_url(ct)}/frames/1")
    assert _parts(await frame.read(), frame.headers["Content-Type"])[0][1] == source_frames(ct)[0]


async def test_stow_takes_a_chunked_body(client: TestClient):
    boundary = b"chunked-stow"
    files = [corpus_path(name).read_bytes() for name in ("CT_small.dcm", "MR_small.dcm")]

    async def body():  # sent with Transfer-Encoding: chunked, in small pieces
        for data in files:
            message = b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + data
            for start in range(0, len(message), 4096):
                yield message[start : start + 4096]
            yield b"\r\n"
        yield b"--" + boundary + b"--\r\n"

    response = await client.post(
        f"{ROOT}/studies",
        data=body(),
        headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=chunked-stow'
        },
    )
    assert response.status == 200, await response.text()
    assert len((await response.json())["00081199"]["Value"]) == 2


async def test_stow_bodies_are_limited_like_every_upload(make_client):
    client = await make_client(http={"max_request_size_mb": 1})
    data = (
        b"--b\r\nContent-Type: application/dicom\r\n\r\n"
        + bytes(2 * 1024 * 1024)
        + b"\r\n--b--\r\n"
    )
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}
    declared = await client.post(f"{ROOT}/studies", data=data, headers=headers)
    assert declared.status == 413

    async def chunked():  # declares no length: refused as it arrives
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    streamed = await client.post(f"{ROOT}/studies", data=chunked(), headers=headers)
    assert streamed.status == 413
    assert (await streamed.json())["ErrorCode"] == "request-too-large"


async def test_a_deflated_frame_goes_out_as_gzip_without_inflating(client: TestClient):
    stored = await _store_corpus(client)
    ct = stored["CT_small.dcm"]
    core = client.server.app[CORE]
    for sealed in (False, True):  # from the staging file, then from the study ZIP
        if sealed:
            core.seal_quiet_studies(now=time.time() + 3600)
        response = await client.get(
            f"{_instance_url(ct)}/frames/1", headers={"Accept-Encoding": "gzip"}
        )
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        parts = _parts(await response.read(), response.headers["Content-Type"])
        assert parts[0][1] == source_frames(ct)[0]
        assert "transfer-syntax=1.2.840.10008.1.2.1" in parts[0][0]["Content-Type"]
    plain = await client.get(
        f"{_instance_url(ct)}/frames/1", headers={"Accept-Encoding": "identity"}
    )
    assert "Content-Encoding" not in plain.headers
    jpeg = stored["examples_ybr_color.dcm"]  # compressed frames are stored as they are
    stored_as_is = await client.get(
        f"{_instance_url(jpeg)}/frames/1", headers={"Accept-Encoding": "gzip"}
    )
    assert "Content-Encoding" not in stored_as_is.headers
