"""A study archive whose files cannot be read: an error answer before the first byte, a cut
connection after it (never an error answer written inside a started ZIP)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import aiohttp
import pydicom
import pytest

from tests.node.rest.conftest import MakeClient
from tests.storage.helpers import ct_bytes


async def _study_of_three(client: aiohttp.ClientSession) -> str:
    for index in range(3):
        stored = await client.post("/instances", data=ct_bytes(index))
        assert stored.status == 200
    (study,) = await (await client.get("/studies")).json()
    return str(study)


async def _archive_order(client: aiohttp.ClientSession, study: str) -> list[str]:
    """The SOP Instance UIDs in the order the archive holds them."""
    answer = await client.get(f"/studies/{study}/archive")
    assert answer.status == 200
    with zipfile.ZipFile(io.BytesIO(await answer.read())) as archive:
        return [
            pydicom.dcmread(io.BytesIO(archive.read(name))).SOPInstanceUID
            for name in archive.namelist()
        ]


def _staged_file(data_dir: Path, sop_uid: str) -> Path:
    (path,) = data_dir.glob(f"studies/*/*/staging/{sop_uid}.zip")
    return path


@pytest.mark.parametrize("lost", ["first", "last"])
async def test_a_file_lost_before_or_during_the_archive(
    make_client: MakeClient, tmp_path: Path, lost: str
) -> None:
    client = await make_client()
    study = await _study_of_three(client)
    order = await _archive_order(client, study)
    _staged_file(tmp_path / "data", order[0 if lost == "first" else -1]).unlink()
    answer = await client.get(f"/studies/{study}/archive")
    if lost == "first":  # nothing sent yet: a plain error answer
        assert answer.status >= 400
        assert "ErrorCode" in await answer.json()
        return
    assert answer.status == 200  # two files went out before the third failed
    with pytest.raises(aiohttp.ClientPayloadError):
        await answer.read()
    # and the node still answers
    assert (await client.get("/system")).status == 200
