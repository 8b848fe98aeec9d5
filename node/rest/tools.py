"""``/tools/find`` and ``/tools/lookup``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.params import json_body
from pacsnode.node.rest.resources import describe


def _int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"'{name}' must be a non-negative integer")
    return value


async def tools_find(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with Level and Query")
    try:
        level = Level.parse(str(body.get("Level", "")))
    except ValueError as exc:
        raise BadRequest(f"'Level' must be Patient, Study, Series or Instance: {exc}") from None
    query = body.get("Query", {})
    case_sensitive = bool(body.get("CaseSensitive", False))
    since, limit = _int_field(body, "Since"), _int_field(body, "Limit")
    expand = bool(body.get("Expand", False))
    core = core_of(request)

    def work() -> list[Any]:
        cap = request.app[CONFIG].find.cap(level is Level.INSTANCE)
        ids = core.find(
            level, query, case_sensitive=case_sensitive, since=since, limit=limit or cap
        )
        if not expand:
            return ids
        pending = core.pending_studies()
        return [describe(core, resource_id, level, pending) for resource_id in ids]

    return web.json_response(await blocking(work))


def _lookup(core: NodeCore, value: str) -> list[dict[str, str]]:
    found = []
    keywords = {
        Level.PATIENT: "PatientID",
        Level.STUDY: "StudyInstanceUID",
        Level.SERIES: "SeriesInstanceUID",
        Level.INSTANCE: "SOPInstanceUID",
    }
    for level, keyword in keywords.items():
        for resource_id in core.find(level, {keyword: value}):
            found.append(
                {"ID": resource_id, "Path": f"/{level.plural}/{resource_id}", "Type": level.value}
            )
    return found


async def tools_lookup(request: web.Request) -> web.Response:
    value = (await request.text()).strip()
    if not value or any(c in value for c in "*?\\"):
        raise BadRequest("send one identifier (PatientID or a UID) without wildcards")
    return web.json_response(await blocking(_lookup, core_of(request), value))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/tools/find", tools_find)
    app.router.add_post("/tools/lookup", tools_lookup)
