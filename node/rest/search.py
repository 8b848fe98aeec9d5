"""``POST /tools/search``: search over every attribute, with a body like ``/tools/find``'s.

``{"Query": "Modality:CT AND SliceThickness:[1 TO 3]", "Level": "Study", "Limit": 50,
"Since": 100, "Expand": true}``: the ids (or, with ``Expand``, the resources as ``GET
/{level}/{id}`` shows them) of the resources at ``Level`` holding an instance that
matches, in id order (stable, so ``Since``/``Limit`` page through). ``Level`` defaults
to Study: what a search usually looks for is the studies to open, and an instance-level
answer can be very long. The query language is :mod:`pacsnode.node.search.query_language`;
a query that does not parse answers 400 naming the position.

The search index follows the change feed a moment behind ingest (``SearchIndexLag`` in
``/statistics``); resources deleted since it last caught up are left out of answers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.formats import ResourceView, body_view
from pacsnode.node.rest.params import json_body
from pacsnode.node.rest.resources import describe

DEFAULT_LEVEL = Level.STUDY
#: without Limit nor a [find] cap: every match, as /tools/find answers
_UNLIMITED = 1 << 62


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"'{name}' must be a non-negative integer")
    return value


def _level(body: dict[str, Any]) -> Level:
    if "Level" not in body:
        return DEFAULT_LEVEL
    try:
        return Level.parse(str(body["Level"]))
    except ValueError as exc:
        raise BadRequest(f"'Level' must be Patient, Study, Series or Instance: {exc}") from None


def _query(body: dict[str, Any]) -> str:
    query = body.get("Query", "")
    if not isinstance(query, str):
        raise BadRequest("'Query' must be a search string, e.g. \"Modality:CT AND CHEST\"")
    return query


def _answer(
    core: NodeCore, ids: list[str], level: Level, expand: bool, view: ResourceView
) -> list[Any]:
    """The ids still there (the search index may not have seen a deletion yet), or the
    resources themselves."""
    present = [i for i, record in zip(ids, core.records(ids), strict=True) if record is not None]
    if not expand:
        return present
    pending = core.pending_studies()
    shown = []
    for resource_id in present:
        try:
            shown.append(describe(core, resource_id, level, pending, view))
        except UnknownResource:
            continue  # deleted while the answer was being made
    return shown


async def tools_search(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with Query (and Level, Limit...)")
    query, level = _query(body), _level(body)
    since, limit = _count(body, "Since"), _count(body, "Limit")
    expand = bool(body.get("Expand", False))
    view = body_view(body, request.app)
    cap = request.app[CONFIG].find.cap(level is Level.INSTANCE)
    core = core_of(request)

    def work() -> list[Any]:
        ids = core.search(query, level, limit or cap or _UNLIMITED, since)
        return _answer(core, ids, level, expand, view)

    return web.json_response(await blocking(work))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/tools/search", tools_search)
