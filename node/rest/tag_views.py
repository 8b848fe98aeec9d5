"""Tags of several instances at once, as Orthanc's REST API shows them.

- ``/{level}/{id}/instances-tags``: the tags of every instance below the resource;
- ``/{level}/{id}/shared-tags``: the tags all those instances have with one value;
- ``/{level}/{id}/module`` (and ``/studies/{id}/module-patient``): the level's main
  DICOM tags, read from one of its instances, with the tags' full description.

Orthanc's full format by default; ``?simplify`` gives keyword -> value and ``?short``
tag -> value, as ``/instances/{id}/tags`` does.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydicom.datadict import tag_for_keyword

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.index.maintags import MAIN_TAGS
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.node.rest.formats import writer_for
from pacsnode.node.rest.params import level_of
from pacsnode.node.rest.tags import TagFormat, TagWriter


def _writer(request: web.Request) -> TagWriter:
    return writer_for(request, TagFormat.FULL)


def _instances_json(core: NodeCore, resource_id: str, level: Level) -> list[tuple[str, Any]]:
    core.resource(resource_id, level)
    return [(ref.id, core.instance_json(ref)) for ref in core.instances_of([resource_id])]


def _shared(metadatas: list[dict[str, Any]]) -> dict[str, Any]:
    """The elements every instance has, equal in all (compared as canonical JSON)."""
    if not metadatas:
        return {}
    first, others = metadatas[0], metadatas[1:]
    return {
        key: element
        for key, element in first.items()
        if all(
            key in other
            and json.dumps(other[key], sort_keys=True) == json.dumps(element, sort_keys=True)
            for other in others
        )
    }


def _module(metadata: dict[str, Any], level: Level) -> dict[str, Any]:
    keys = {f"{tag_for_keyword(keyword):08X}" for keyword in MAIN_TAGS[level]}
    return {key: element for key, element in metadata.items() if key in keys}


async def instances_tags(request: web.Request) -> web.Response:
    found = await blocking(
        _instances_json, core_of(request), request.match_info["id"], level_of(request)
    )
    writer = _writer(request)
    return web.json_response({rid: writer.dataset(metadata) for rid, metadata in found})


async def shared_tags(request: web.Request) -> web.Response:
    found = await blocking(
        _instances_json, core_of(request), request.match_info["id"], level_of(request)
    )
    shared = _shared([metadata for _, metadata in found])
    return web.json_response(_writer(request).dataset(shared))


async def module(request: web.Request) -> web.Response:
    level = level_of(request)
    module_level = Level.PATIENT if request.match_info["kind"] == "module-patient" else level
    found = await blocking(_instances_json, core_of(request), request.match_info["id"], level)
    metadata = found[0][1] if found else {}
    return web.json_response(_writer(request).dataset(_module(metadata, module_level)))


def setup_routes(app: web.Application) -> None:
    level = "{level:patients|studies|series|instances}"
    app.router.add_get(f"/{level}/{{id}}/instances-tags", instances_tags)
    app.router.add_get(f"/{level}/{{id}}/shared-tags", shared_tags)
    app.router.add_get(f"/{level}/{{id}}/{{kind:module}}", module)
    app.router.add_get("/{level:studies}/{id}/{kind:module-patient}", module)
