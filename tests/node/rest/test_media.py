"""DICOM media (a ZIP of IMAGES/IMn files and their DICOMDIR) and archives made by jobs."""

from __future__ import annotations

import asyncio
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydicom.fileset import FileSet

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.index import Origin
from pacsnode.node.jobs import Job, JobCancelled, JobContext
from pacsnode.node.rest.archive import Media
from pacsnode.node.rest.archives import _make_archive, _Request
from pacsnode.storage.dicomdir import read_header
from tests.node.rest.conftest import assert_error, get_json, upload
from tests.storage.helpers import ct_bytes
from tests.storage.test_dicomdir import dicom3tools_findings

MISSING = "0" * 8 + "-" + "0" * 32


async def _three_instances(client: TestClient) -> list[dict[str, Any]]:
    """Two instances in one series, a third in another study of the same patient."""
    return [
        await upload(client, ct_bytes(0)),
        await upload(client, ct_bytes(1)),
        await upload(client, ct_bytes(0, study=2)),
    ]


async def _zip(response: Any) -> zipfile.ZipFile:
    assert response.status == 200, await response.text()
    assert response.content_type == "application/zip"
    return zipfile.ZipFile(io.BytesIO(await response.read()))


def _unpacked(media: zipfile.ZipFile, root: Path) -> FileSet:
    media.extractall(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a broken offset or a missing file warns
        return FileSet(root / "DICOMDIR")


async def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = await get_json(client, f"/jobs/{job_id}")
        if job["State"] in ("Success", "Failure", "Cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def test_media_of_a_patient_lists_every_file(client: TestClient, tmp_path: Path) -> None:
    stored = await _three_instances(client)
    media = await _zip(await client.get(f"/patients/{stored[0]['ParentPatient']}/media"))
    assert sorted(media.namelist()) == ["DICOMDIR", "IMAGES/IM0", "IMAGES/IM1", "IMAGES/IM2"]
    file_set = _unpacked(media, tmp_path)
    expected = {
        read_header(ct_bytes(i, study=s)).SOPInstanceUID for i, s in ((0, 1), (1, 1), (0, 2))
    }
    assert {i.SOPInstanceUID for i in file_set} == expected
    assert len(file_set.find_values("StudyInstanceUID")) == 2
    for instance in file_set:  # each record names the file that holds its instance
        assert read_header(Path(instance.path).read_bytes()).SOPInstanceUID == (
            instance.SOPInstanceUID
        )


@pytest.mark.parametrize("level", ["studies", "series"])
async def test_media_of_a_study_or_a_series(client: TestClient, level: str) -> None:
    stored = await _three_instances(client)
    parent = stored[0]["ParentStudy" if level == "studies" else "ParentSeries"]
    media = await _zip(await client.get(f"/{level}/{parent}/media"))
    assert sorted(media.namelist()) == ["DICOMDIR", "IMAGES/IM0", "IMAGES/IM1"]
    await assert_error(await client.get(f"/{level}/{MISSING}/media"), 404, "unknown-resource")


async def test_extended_media_adds_the_series_description(client: TestClient) -> None:
    stored = await _three_instances(client)
    series = stored[0]["ParentSeries"]
    description = read_header(ct_bytes(0)).SeriesDescription

    def series_records(media: zipfile.ZipFile) -> list[Any]:
        records = read_header(media.read("DICOMDIR")).DirectoryRecordSequence
        return [r for r in records if r.DirectoryRecordType == "SERIES"]

    plain = series_records(await _zip(await client.get(f"/series/{series}/media")))
    assert "SeriesDescription" not in plain[0]
    for response in (
        await client.get(f"/series/{series}/media?extended"),
        await client.post("/tools/create-media-extended", json=[series]),
        await client.post("/tools/create-media", json={"Resources": [series], "Extended": True}),
    ):
        assert series_records(await _zip(response))[0].SeriesDescription == description


async def test_create_media_of_instances_and_of_a_link(client: TestClient) -> None:
    stored = await _three_instances(client)
    ids = [s["ID"] for s in stored]
    media = await _zip(await client.post("/tools/create-media", json=ids))
    assert len(media.namelist()) == 4 and "DICOMDIR" in media.namelist()
    linked = await _zip(await client.get(f"/tools/create-media?resources={ids[0]},{ids[2]}"))
    assert sorted(linked.namelist()) == ["DICOMDIR", "IMAGES/IM0", "IMAGES/IM1"]
    archive = await _zip(await client.get(f"/tools/create-archive?resources={ids[0]}"))
    assert len(archive.namelist()) == 1 and archive.namelist()[0].endswith(".dcm")
    await assert_error(
        await client.post("/tools/create-media", json=[MISSING]), 404, "unknown-resource"
    )
    await assert_error(await client.get("/tools/create-media"), 400, "bad-request")


async def test_media_and_archives_made_by_jobs(client: TestClient) -> None:
    stored = await _three_instances(client)
    series = stored[0]["ParentSeries"]
    body = {"Asynchronous": True, "Filename": 'tot"o.zip'}
    started = await (await client.post(f"/series/{series}/media", json=body)).json()
    assert started["Path"] == f"/jobs/{started['ID']}"
    job = await _finished(client, started["ID"])
    assert job["State"] == "Success" and job["Type"] == "Media" and job["Progress"] == 100
    assert job["Content"]["InstancesCount"] == 2 and job["Content"]["ArchiveSizeMB"] == 0
    response = await client.get(f"/jobs/{started['ID']}/archive")
    assert response.headers["Content-Disposition"] == 'attachment; filename="toto.zip"'
    assert "DICOMDIR" in (await _zip(response)).namelist()

    ids = [s["ParentSeries"] for s in (stored[0], stored[2])]
    body = {"Synchronous": False, "Resources": ids}
    for path, names in (("/tools/create-archive", 3), ("/tools/create-media", 4)):
        started = await (await client.post(path, json=body)).json()
        assert (await _finished(client, started["ID"]))["Content"]["InstancesCount"] == 3
        media = await _zip(await client.get(f"/jobs/{started['ID']}/archive"))
        assert len(media.namelist()) == names


async def test_a_media_zip_uploaded_back_brings_its_instances_only(client: TestClient) -> None:
    stored = await upload(client, ct_bytes(0))
    response = await client.get(f"/studies/{stored['ParentStudy']}/media")
    media = await response.read()
    assert (await client.delete(f"/instances/{stored['ID']}")).status == 200
    answers = await upload(client, media)
    assert [(a["ID"], a["Status"]) for a in answers] == [(stored["ID"], "Success")]


@pytest.mark.e2e
async def test_dicom3tools_accept_the_media(client: TestClient, tmp_path: Path) -> None:
    stored = await _three_instances(client)
    for query in ("", "?extended"):
        media = await _zip(await client.get(f"/patients/{stored[0]['ParentPatient']}/media{query}"))
        media.extract("DICOMDIR", tmp_path / query.strip("?"))
        errors, entity_findings = dicom3tools_findings(tmp_path / query.strip("?") / "DICOMDIR")
        assert errors == [] and entity_findings == []


def test_a_cancelled_job_leaves_no_archive(core: NodeCore, tmp_path: Path) -> None:
    stored = core.ingest(ct_bytes(0), Origin())
    job = Job("cancelled", "Media", {})
    job.cancelled.set()
    asked = _Request([stored.ids[Level.INSTANCE]], True, "a.zip", Media.MEDIA)
    with pytest.raises(JobCancelled):
        _make_archive(core, asked, tmp_path / "spool", JobContext(job))
    assert list((tmp_path / "spool").iterdir()) == []
