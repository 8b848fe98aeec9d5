"""/changes numbers changes as Orthanc does: deletions are not numbered, so numbers run on."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.node.rest.conftest import get_json, upload
from tests.storage.helpers import ct_bytes


async def test_numbers_run_on_across_a_deletion(client: TestClient):
    first = await upload(client, ct_bytes(0))
    assert (await client.delete(f"/instances/{first['ID']}")).status == 200
    empty = await get_json(client, "/changes")
    assert empty["Changes"] == [] and empty["Done"]
    last = empty["Last"]
    assert (await get_json(client, "/changes?last"))["Last"] == last
    assert (await get_json(client, f"/changes?since={last + 1000}"))["Last"] == last

    await upload(client, ct_bytes(0))
    page = await get_json(client, "/changes")
    assert [c["Seq"] for c in page["Changes"]] == [last + 1, last + 2, last + 3, last + 4]
    assert {c["ChangeType"] for c in page["Changes"]} == {
        "NewPatient", "NewStudy", "NewSeries", "NewInstance",
    }  # fmt: skip
    assert page["Last"] == last + 4 and page["Done"]
    assert (await get_json(client, "/changes?last"))["Changes"][0]["Seq"] == last + 4

    # a cursor in Orthanc's numbers pages exactly
    first_two = await get_json(client, f"/changes?since={last}&limit=2")
    assert [c["Seq"] for c in first_two["Changes"]] == [last + 1, last + 2]
    assert not first_two["Done"] and first_two["Last"] == last + 2
    rest = await get_json(client, f"/changes?since={first_two['Last']}")
    assert [c["Seq"] for c in rest["Changes"]] == [last + 3, last + 4]

    # the node's own feed (what peers read) keeps the deletions, in its own numbers
    whole = await get_json(client, "/changes?deleted&limit=100")
    deleted = [c for c in whole["Changes"] if c["ChangeType"] == "Deleted"]
    assert deleted and whole["Last"] > last + 4
