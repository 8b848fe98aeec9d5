"""Walking the hierarchy from a resource, as Orthanc's REST API does.

``/{level}/{id}/{patient|study|series}`` answers the ancestor at that level;
``/{level}/{id}/{studies|series|instances}`` every descendant at that level
(both expanded, like ``?expand`` on the lists); ``/{level}/{id}/statistics`` counts
what is below the resource and says how much room it takes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.node.rest.formats import ResourceView, resource_view
from pacsnode.node.rest.params import level_of
from pacsnode.node.rest.resources import describe

_MIB = 1024 * 1024


def _ancestor(
    core: NodeCore, resource_id: str, level: Level, wanted: Level, view: ResourceView
) -> Any:
    record = core.resource(resource_id, level)
    for ancestor in core.ancestors(record):
        if ancestor["level"] == wanted.value:
            return describe(core, ancestor["id"], wanted, None, view)
    raise BadRequest(f"no {wanted.value.lower()} above {resource_id}")  # cannot happen


def _descendants(
    core: NodeCore, resource_id: str, level: Level, wanted: Level, view: ResourceView
) -> Any:
    if wanted is level:
        raise BadRequest(f"a {level.value.lower()} has no {wanted.plural} below it")
    ids = [core.resource(resource_id, level)["id"]]
    for _ in range(wanted.depth - level.depth):
        ids = [child for parent in ids for child in core.resource(parent)["children"]]
    pending = core.pending_studies()
    return [describe(core, child, wanted, pending, view) for child in ids]


async def related(request: web.Request) -> web.Response:
    """The ancestor (``/instances/{id}/series``) or the descendants (``/studies/{id}/series``)
    at the level the last path part names."""
    level, wanted = level_of(request), Level.parse(request.match_info["related"])
    walk = _ancestor if wanted.depth < level.depth else _descendants
    found = await blocking(
        walk, core_of(request), request.match_info["id"], level, wanted, resource_view(request)
    )
    return web.json_response(found)


async def statistics(request: web.Request) -> web.Response:
    """Orthanc's shape: byte sizes as strings, MiB sizes as numbers, counts below."""
    level = level_of(request)
    found = await blocking(core_of(request).resource_statistics, request.match_info["id"], level)
    shown: dict[str, Any] = {
        f"Count{child.plural.capitalize()}": found[f"Count{child.plural.capitalize()}"]
        for child in Level
        if child.depth > level.depth
    }
    for key in ("DiskSize", "UncompressedSize", "DicomDiskSize", "DicomUncompressedSize"):
        shown[key] = str(found[key])
        shown[f"{key}MB"] = found[key] // _MIB
    return web.json_response(shown)


def setup_routes(app: web.Application) -> None:
    level = "{level:patients|studies|series|instances}"
    related_level = "{related:patient|study|studies|series|instances}"
    app.router.add_get(f"/{level}/{{id}}/{related_level}", related)
    app.router.add_get(f"/{level}/{{id}}/statistics", statistics)
