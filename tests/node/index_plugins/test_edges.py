"""Queries on attributes that are not main tags at the edges, in-process, without the
search index (``[search] enabled = false``, or a core opened without background work):
``/tools/find`` and QIDO-RS read them from the files of at most a bounded number of
main-tag candidates, and answer 400 ``query-too-broad`` beyond; a plugin's failure is a
DIMSE failure with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pacsnode.node.dicom.handlers import IDENTIFIER_DOES_NOT_MATCH, _find_failure
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins import finder
from pacsnode.node.index_plugins.contract import IndexPluginFailed
from pacsnode.node.rest.app import create_app
from tests.node.conftest import MakeCore
from tests.node.index_plugins.corpus import Item, corpus, ids
from tests.node.rest.conftest import assert_error, node_config, upload


@pytest.fixture
async def client(make_core: MakeCore, aiohttp_client: Any, tmp_path: Path) -> TestClient:
    config = node_config(tmp_path / "data")
    return await aiohttp_client(create_app(make_core(data_dir=config.core.data_dir), config))


async def stored(client: TestClient) -> list[Item]:
    items = corpus()
    for item in items:
        await upload(client, item.data)
    return items


async def find(client: TestClient, level: str, query: dict[str, str], **more: Any) -> Any:
    response = await client.post("/tools/find", json={"Level": level, "Query": query, **more})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_tools_find_reads_other_attributes_from_the_files(client: TestClient) -> None:
    items = await stored(client)
    chest = await find(client, "Study", {"BodyPartExamined": "CHEST"})
    assert set(chest) == ids(items, Level.STUDY, "a1", "d1")
    assert await find(client, "Study", {"BodyPartExamined": "CHEST"}, Since=1, Limit=5) == chest[1:]
    instances = await find(client, "Instance", {"AcquisitionDate": "20240111-", "Modality": "CT"})
    assert set(instances) == ids(items, Level.INSTANCE, "a2", "b1")
    response = await client.post(
        "/tools/count-resources", json={"Level": "Series", "Query": {"SliceThickness": "5"}}
    )
    assert await response.json() == {"Count": 1}


async def test_qido_matches_other_attributes(client: TestClient) -> None:
    items = await stored(client)
    for name in ("BodyPartExamined", "00180015"):
        response = await client.get(f"/dicom-web/studies?{name}=CHEST")
        assert response.status == 200, await response.text()
        assert "Warning" not in response.headers
        answers = await response.json()
        uids = {answer["0020000D"]["Value"][0] for answer in answers}
        assert uids == {i.dataset.StudyInstanceUID for i in items if i.name in ("a1", "d1")}


async def test_too_broad_a_query_is_refused_saying_how_to_narrow_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stored(client)
    monkeypatch.setattr(finder, "FALLBACK_CANDIDATES", 1)
    response = await client.post(
        "/tools/find", json={"Level": "Study", "Query": {"BodyPartExamined": "CHEST"}}
    )
    error = await assert_error(response, 400, "query-too-broad")
    assert "BodyPartExamined" in error["Message"] and "main tags" in error["Message"]
    qido = await client.get("/dicom-web/studies?BodyPartExamined=CHEST")
    assert qido.status == 400
    narrowed = await find(client, "Study", {"BodyPartExamined": "CHEST", "PatientID": "PAT00003"})
    assert len(narrowed) == 1


def test_a_failing_plugin_is_a_c_find_failure_with_its_reason() -> None:
    failed = _find_failure(IndexPluginFailed("index plugin 'x' failed: ConnectionError: gone"))
    assert not isinstance(failed, int)
    assert failed.Status == 0xC000 and failed.ErrorComment.startswith("index plugin 'x' failed")
    assert _find_failure(BadRequest("bad value")) == IDENTIFIER_DOES_NOT_MATCH
