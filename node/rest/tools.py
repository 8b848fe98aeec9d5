"""``/tools``: the list of tools, ``find``, ``count-resources``, ``lookup``, ``bulk-content``
and ``dicom-conformance``."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.maintags import main_tag_keywords
from pacsnode.node.rest.conformance import conformance_statement
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.formats import ResourceView, body_view
from pacsnode.node.rest.params import json_body
from pacsnode.node.rest.resources import describe


def _int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"'{name}' must be a non-negative integer")
    return value


def _level(body: dict[str, Any], name: str = "Level") -> Level:
    try:
        return Level.parse(str(body.get(name, "")))
    except ValueError as exc:
        raise BadRequest(f"'{name}' must be Patient, Study, Series or Instance: {exc}") from None


async def _query_body(request: web.Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with Level and Query")
    return body


def _find(
    core: NodeCore,
    level: Level,
    query: Any,
    *,
    case_sensitive: bool = False,
    since: int = 0,
    limit: int | None = None,
) -> list[str]:
    """The ids ``/tools/find`` answers, on any attribute: PatientID and AccessionNumber
    match case-insensitively unless ``CaseSensitive``, as in Orthanc; attributes that are
    not main tags go through the index plugins (the search index)."""
    if not isinstance(query, dict):
        raise BadRequest("Query must be a JSON object of DICOM keywords to values")
    return core.find(
        level, query, case_sensitive=case_sensitive, since=since, limit=limit, fold_identifiers=True
    )


async def tools_find(request: web.Request) -> web.Response:
    body = await _query_body(request)
    level = _level(body)
    query = body.get("Query", {})
    case_sensitive = bool(body.get("CaseSensitive", False))
    since, limit = _int_field(body, "Since"), _int_field(body, "Limit")
    expand = bool(body.get("Expand", False))
    view = body_view(body, request.app)
    core = core_of(request)

    def work() -> list[Any]:
        cap = request.app[CONFIG].find.cap(level is Level.INSTANCE)
        ids = _find(
            core, level, query, case_sensitive=case_sensitive, since=since, limit=limit or cap
        )
        if not expand:
            return ids
        pending = core.pending_studies()
        return [describe(core, resource_id, level, pending, view) for resource_id in ids]

    if not expand and _answered_from_a_few_keys(core, level, query, case_sensitive):
        # Looking up a given PatientID or UID reads a few keys of the mapped index, less
        # than handing the work to a thread and back costs (a third of such a request).
        return web.json_response(work())
    return web.json_response(await blocking(work))


def _answered_from_a_few_keys(
    core: NodeCore, level: Level, query: Any, case_sensitive: bool
) -> bool:
    """Whether ``/tools/find`` answers from index lookups of given values alone: every
    attribute asked for is one the index keeps, and one names its value(s) exactly."""
    if not isinstance(query, dict) or not query:
        return False
    if any(keyword not in main_tag_keywords(level) for keyword in query):
        return False
    return core.find_is_narrow(level, query, case_sensitive=case_sensitive, fold_identifiers=True)


async def count_resources(request: web.Request) -> web.Response:
    """How many resources ``/tools/find`` would match, without its limits (Orthanc's
    ``/tools/count-resources``: ``Since`` and ``Limit`` are ignored, ``CaseSensitive``
    refused)."""
    body = await _query_body(request)
    level = _level(body)
    if body.get("CaseSensitive") is True:
        raise BadRequest("/tools/count-resources does not match case-sensitively")
    core = core_of(request)
    found = await blocking(_find, core, level, body.get("Query", {}))
    return web.json_response({"Count": len(found)})


def _lookup(core: NodeCore, value: str) -> list[dict[str, str]]:
    found = []
    keywords = {
        Level.PATIENT: "PatientID",
        Level.STUDY: "StudyInstanceUID",
        Level.SERIES: "SeriesInstanceUID",
        Level.INSTANCE: "SOPInstanceUID",
    }
    for level, keyword in keywords.items():
        # case-insensitive for PatientID, as Orthanc's lookup (UIDs hold no letters)
        for resource_id in core.find(level, {keyword: value}, fold_identifiers=True):
            found.append(
                {"ID": resource_id, "Path": f"/{level.plural}/{resource_id}", "Type": level.value}
            )
    return found


async def tools_lookup(request: web.Request) -> web.Response:
    value = (await request.text()).strip()
    if not value or any(c in value for c in "*?\\"):
        raise BadRequest("send one identifier (PatientID or a UID) without wildcards")
    return web.json_response(await blocking(_lookup, core_of(request), value))


def _at_level(core: NodeCore, resource_id: str, wanted: Level) -> list[str]:
    """The resource's ancestor at ``wanted``, or its descendants there, or itself."""
    record = core.resource(resource_id)
    level = Level(record["level"])
    if wanted.depth < level.depth:
        return [a["id"] for a in core.ancestors(record) if a["level"] == wanted.value]
    ids = [resource_id]
    for _ in range(wanted.depth - level.depth):
        ids = [child for parent in ids for child in core.resource(parent)["children"]]
    return ids


def _bulk_content(
    core: NodeCore, ids: list[str], level: Level | None, metadata: bool, view: ResourceView
) -> list[dict[str, Any]]:
    wanted: dict[str, None] = {}  # first seen first, once each
    for resource_id in ids:
        if not core.exists(resource_id):
            continue  # deleted meanwhile, or never known: Orthanc leaves it out too
        for found in _at_level(core, resource_id, level) if level else [resource_id]:
            wanted.setdefault(found)
    pending = core.pending_studies()
    shown = []
    for resource_id in wanted:
        resource = describe(core, resource_id, None, pending, view)
        if metadata:
            resource["Metadata"] = core.annotations.metadata(resource_id)
        shown.append(resource)
    return shown


async def bulk_content(request: web.Request) -> web.Response:
    """Several resources at once, as ``GET /{level}/{id}`` shows them (with their metadata
    unless ``"Metadata": false``), optionally all taken to one ``Level``."""
    body = await json_body(request)
    ids = body.get("Resources") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("the body must be a JSON object with 'Resources': a list of ids")
    level = _level(body) if "Level" in body else None
    metadata = body.get("Metadata", True)
    if not isinstance(metadata, bool):
        raise BadRequest("'Metadata' must be true or false")
    view = body_view(body, request.app)
    found = await blocking(_bulk_content, core_of(request), ids, level, metadata, view)
    return web.json_response(found)


def tool_names(app: web.Application) -> list[str]:
    """The names under ``/tools/``, read from the routes every module registered."""
    names = set()
    for resource in app.router.resources():
        parts = resource.canonical.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "tools" and "{" not in parts[1]:
            names.add(parts[1])
    return sorted(names)


async def list_tools(request: web.Request) -> web.Response:
    """The tools, as JSON or, when the client accepts only XML, as Orthanc's XML."""
    names = tool_names(request.app)
    accept = request.headers.get("Accept", "")
    if "xml" in accept and "json" not in accept:
        items = "".join(f"  <item>{escape(name)}</item>\n" for name in names)
        text = f'<?xml version="1.0" encoding="utf-8"?>\n<root>\n{items}</root>\n'
        return web.Response(text=text, content_type="application/xml")
    return web.json_response(names)


async def dicom_conformance(request: web.Request) -> web.Response:
    return web.Response(text=conformance_statement(request.app[CONFIG]))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/tools", list_tools)
    app.router.add_post("/tools/find", tools_find)
    app.router.add_post("/tools/count-resources", count_resources)
    app.router.add_post("/tools/lookup", tools_lookup)
    app.router.add_post("/tools/bulk-content", bulk_content)
    app.router.add_get("/tools/dicom-conformance", dicom_conformance)
