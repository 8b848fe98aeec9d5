"""``/patients``, ``/studies``, ``/series``, ``/instances``: list, show, delete, content."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node import audit
from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.rest.archive import stream_archive
from pacsnode.node.rest.context import USER, blocking, core_of
from pacsnode.node.rest.file_json import file_as_json, wants_dicom_json
from pacsnode.node.rest.formats import ResourceView, resource_view, writer_for
from pacsnode.node.rest.params import flag_param, int_param, level_of
from pacsnode.node.rest.requested import requested_tags
from pacsnode.node.rest.tags import TagFormat, main_tags
from pacsnode.node.series_status import series_status

_CHILDREN_FIELD = {
    Level.PATIENT: "Studies",
    Level.STUDY: "Series",
    Level.SERIES: "Instances",
}
_PARENT_FIELD = {
    Level.STUDY: "ParentPatient",
    Level.SERIES: "ParentStudy",
    Level.INSTANCE: "ParentSeries",
}


def describe(
    core: NodeCore,
    resource_id: str,
    level: Level | None = None,
    pending: set[str] | None = None,
    view: ResourceView | None = None,
) -> dict[str, Any]:
    """A resource as Orthanc's ``GET /{level}/{id}`` shows it (``view``: the tags' format
    and the tags requested besides the main ones)."""
    record = core.resource(resource_id, level)
    level = Level(record["level"])
    pending = pending if pending is not None else core.pending_studies()
    view = view or ResourceView()
    shown: dict[str, Any] = {
        "ID": resource_id,
        "Type": level.value,
        "MainDicomTags": main_tags(record["tags"], view.fmt),
        "LastUpdate": record["last_update"],
        "Labels": [],  # pacsnode has no labels (Orthanc 1.12's field, always present)
    }
    if level in _PARENT_FIELD:
        shown[_PARENT_FIELD[level]] = record["parent"]
    if level in _CHILDREN_FIELD:
        shown[_CHILDREN_FIELD[level]] = record["children"]
        shown["IsStable"] = not _has_pending(core, record, pending)
    if level is Level.STUDY:
        shown["PatientMainDicomTags"] = main_tags(record.get("patient_tags", {}), view.fmt)
    if level is Level.SERIES:
        expected = core.annotations.metadata(resource_id).get("ExpectedNumberOfInstances")
        shown["Status"] = series_status(expected, record["instances"])
        shown["ExpectedNumberOfInstances"] = int(expected) if expected else None
    if level is Level.INSTANCE:
        shown["FileSize"] = record["uncompressed"]  # its file's size, as Orthanc has it
        shown["FileUuid"] = record["digest"]
        index = core.annotations.metadata(resource_id).get("IndexInSeries")
        shown["IndexInSeries"] = int(index) if index else None
    if view.requested is not None:
        shown["RequestedTags"] = requested_tags(core, record, view)
    return shown


def _has_pending(core: NodeCore, record: dict[str, Any], pending: set[str]) -> bool:
    study_uid = record["tags"].get("StudyInstanceUID")
    if study_uid is not None:
        return study_uid in pending
    for child in record["children"]:
        child_record = core.resource(child)
        if _has_pending(core, child_record, pending):
            return True
    return False


async def list_resources(request: web.Request) -> web.Response:
    core = core_of(request)
    level = level_of(request)
    since = int_param(request, "since", 0)
    # As Orthanc 1.10: an explicit limit=0 lists nothing; no limit lists everything.
    limit = int_param(request, "limit", 0) if "limit" in request.query else None
    expand = flag_param(request, "expand")
    view = resource_view(request)

    def work() -> list[Any]:
        if limit == 0:
            return []
        ids = core.list_ids(level, since=since, limit=limit)
        if not expand:
            return ids
        pending = core.pending_studies()
        return [describe(core, resource_id, level, pending, view) for resource_id in ids]

    return web.json_response(await blocking(work))


async def show_resource(request: web.Request) -> web.Response:
    core = core_of(request)
    view = resource_view(request)
    return web.json_response(
        await blocking(describe, core, request.match_info["id"], level_of(request), None, view)
    )


async def delete_resource(request: web.Request) -> web.Response:
    core = core_of(request)
    resource_id = request.match_info["id"]
    record = await blocking(core.resource, resource_id, level_of(request))
    chain = await blocking(core.ancestors, record)
    removed = await blocking(core.delete, resource_id)
    gone = {rid for _, rid, _ in removed.resources}
    audit.deleted(
        request.get(USER), request.remote, str(record.get("level", "")), resource_id,
        f"deleted {len(gone)} resources",
    )  # fmt: skip
    for ancestor in chain:
        if ancestor["id"] not in gone:
            ancestor_level = Level(ancestor["level"])
            return web.json_response(
                {
                    "RemainingAncestor": {
                        "ID": ancestor["id"],
                        "Type": ancestor_level.value,
                        "Path": f"/{ancestor_level.plural}/{ancestor['id']}",
                    }
                }
            )
    return web.json_response({"RemainingAncestor": None})


async def instance_file(request: web.Request) -> web.Response:
    if wants_dicom_json(request):
        return await file_as_json(request)
    core = core_of(request)
    ref = await blocking(core.instance_ref, request.match_info["id"])
    data = await blocking(core.instance_p10, ref)
    return web.Response(body=data, content_type="application/dicom")


async def instance_tags(request: web.Request) -> web.Response:
    core = core_of(request)
    ref = await blocking(core.instance_ref, request.match_info["id"])
    # as Orthanc shows them: numbers as the file wrote them ("0001"), not as JSON numbers
    metadata = await blocking(core.instance_json_as_sent, ref)
    simplified = request.match_info["kind"] == "simplified-tags"
    writer = writer_for(request, TagFormat.HUMAN if simplified else TagFormat.FULL)
    return web.json_response(writer.dataset(metadata))


async def instance_frames(request: web.Request) -> web.Response:
    core = core_of(request)
    ref = await blocking(core.instance_ref, request.match_info["id"])
    frames = await blocking(core.instance_frames, ref)
    # Orthanc counts an instance without Pixel Data as one frame; clients index from it
    return web.json_response(list(range(len(frames) or 1)))


async def instance_frame_raw(request: web.Request) -> web.Response:
    """One frame as stored (Orthanc's ``/frames/{n}/raw``; n counts from 0)."""
    core = core_of(request)
    try:
        number = int(request.match_info["frame"])
    except ValueError:
        raise BadRequest("the frame number must be an integer") from None
    ref = await blocking(core.instance_ref, request.match_info["id"])
    part = await blocking(core.instance_frame, ref, number + 1)
    return web.Response(
        body=part.payload,
        content_type=part.media_type,
        headers={"X-Transfer-Syntax": part.transfer_syntax},
    )


async def archive(request: web.Request) -> web.StreamResponse:
    core = core_of(request)
    level = level_of(request)
    if level not in (Level.PATIENT, Level.STUDY, Level.SERIES):
        raise BadRequest("archives are made of patients, studies or series")
    resource_id = request.match_info["id"]
    record = await blocking(core.resource, resource_id, level)
    return await stream_archive(request, core, record)


def setup_routes(app: web.Application) -> None:
    level = "{level:patients|studies|series|instances}"
    app.router.add_get(f"/{level}", list_resources)
    app.router.add_get(f"/{level}/{{id}}", show_resource)
    app.router.add_delete(f"/{level}/{{id}}", delete_resource)
    app.router.add_get("/instances/{id}/file", instance_file)
    app.router.add_get("/instances/{id}/{kind:tags|simplified-tags}", instance_tags)
    app.router.add_get("/instances/{id}/frames", instance_frames)
    app.router.add_get("/instances/{id}/frames/{frame}/raw", instance_frame_raw)
    app.router.add_get("/{level:patients|studies|series}/{id}/archive", archive)
