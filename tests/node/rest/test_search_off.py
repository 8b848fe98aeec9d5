"""Without a running search feeder (``[search] enabled = false``, or a core opened without
background work), ``/tools/search`` answers 503 and ``/statistics`` says no lag."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from pacsnode.node.rest.roles import required_role
from pacsnode.node.settings import Role
from tests.node.rest.conftest import assert_error, get_json


async def test_search_off_answers_503(client: TestClient) -> None:
    response = await client.post("/tools/search", json={"Query": "Modality:CT"})
    await assert_error(response, 503, "search-unavailable")
    assert "SearchIndexLag" not in await get_json(client, "/statistics")


async def test_a_bad_body_is_refused_before_the_engine(client: TestClient) -> None:
    response = await client.post("/tools/search", json=["Modality:CT"])
    await assert_error(response, 400, "bad-request")


def test_searching_needs_the_role_finding_needs() -> None:
    assert required_role("POST", "/tools/search") is required_role("POST", "/tools/find")
    assert required_role("POST", "/tools/search") is Role.READ_ONLY
