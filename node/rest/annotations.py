"""Metadata, attachments and protection of resources, as Orthanc's REST API has them."""

from __future__ import annotations

import hashlib

from aiohttp import web

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.errors import error_response
from pacsnode.node.rest.params import flag_param, level_of
from pacsnode.node.revisions import Revision, unchanged

_LEVEL = "{level:patients|studies|series|instances}"
_MAX_INLINE_BODY = 64 * 1024 * 1024


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["id"], request.match_info["name"]


async def _checked(request: web.Request) -> str:
    """The resource id, after checking it exists at the level in the path."""
    core = core_of(request)
    resource_id = request.match_info["id"]
    await blocking(core.resource, resource_id, level_of(request))
    return resource_id


async def list_metadata(request: web.Request) -> web.Response:
    resource_id = await _checked(request)
    values = await blocking(core_of(request).annotations.metadata, resource_id)
    if "expand" in request.query:
        return web.json_response(values)
    return web.json_response(sorted(values))


def _revisions_checked(request: web.Request) -> bool:
    return request.app[CONFIG].http.check_revisions


def _revised(response: web.Response, revision: Revision) -> web.Response:
    response.headers["ETag"] = revision.etag
    return response


def _not_modified(request: web.Request, revision: Revision) -> web.Response | None:
    """304 with the ETag when the reader's If-None-Match names the current revision;
    400 when it is no revision at all, still with the ETag (the reader may resync)."""
    try:
        if unchanged(revision, request.headers.get("If-None-Match")):
            return _revised(web.Response(status=304), revision)
    except BadRequest as exc:
        response = error_response(request, exc.http_status, exc.code, exc.message)
        return _revised(response, revision)
    return None


async def get_metadata(request: web.Request) -> web.Response:
    await _checked(request)
    annotations = core_of(request).annotations
    value, revision = await blocking(annotations.get_metadata_revision, *_ids(request))
    return _not_modified(request, revision) or _revised(
        web.Response(text=value, content_type="text/plain"), revision
    )


async def put_metadata(request: web.Request) -> web.Response:
    await _checked(request)
    body = await request.content.read(2048)
    try:
        value = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("metadata values are UTF-8 text") from None
    revision = await blocking(
        core_of(request).annotations.set_metadata,
        *_ids(request),
        value,
        request.headers.get("If-Match"),
        _revisions_checked(request),
    )
    # as Orthanc: an empty body, the new ETag
    return _revised(web.Response(text="", content_type="text/plain"), revision)


async def delete_metadata(request: web.Request) -> web.Response:
    await _checked(request)
    await blocking(
        core_of(request).annotations.delete_metadata,
        *_ids(request),
        request.headers.get("If-Match"),
        _revisions_checked(request),
    )
    return web.Response(text="", content_type="text/plain")


async def list_attachments(request: web.Request) -> web.Response:
    """The attachments' names (``?full``: name -> content type); an instance also has
    Orthanc's ``dicom`` attachment, its file (see :mod:`.dicom_attachment`)."""
    resource_id = await _checked(request)
    annotations = core_of(request).annotations
    names = await blocking(annotations.attachment_names, resource_id)
    if level_of(request) is Level.INSTANCE:
        names = ["dicom", *names]
    if flag_param(request, "full"):
        return web.json_response(
            {n: 1 if n == "dicom" else annotations.content_type_of(n) for n in names}
        )
    return web.json_response(names)


async def attachment_operations(request: web.Request) -> web.Response:
    await _checked(request)
    revision = await blocking(core_of(request).annotations.attachment_revision, *_ids(request))
    if (not_modified := _not_modified(request, revision)) is not None:
        return not_modified
    return _revised(
        web.json_response(
            [
                "compressed-data",
                "compressed-md5",
                "compressed-size",
                "data",
                "is-compressed",
                "md5",
                "size",
                "verify-md5",
            ]
        ),
        revision,
    )


async def put_attachment(request: web.Request) -> web.Response:
    await _checked(request)
    body = await request.content.read(_MAX_INLINE_BODY + 1)
    if len(body) > _MAX_INLINE_BODY:
        raise BadRequest("attachments are limited to 64 MiB")
    compress = request.query.get("compress", "true").lower() not in ("false", "0")
    annotations = core_of(request).annotations
    await blocking(
        annotations.put_attachment,
        *_ids(request),
        body,
        compress,
        request.headers.get("If-Match"),
        _revisions_checked(request),
    )
    revision = await blocking(annotations.attachment_revision, *_ids(request))
    # as Orthanc answers it: an empty object; the new revision and MD5 are in the ETag
    return _revised(web.json_response({}), revision)


async def delete_attachment(request: web.Request) -> web.Response:
    await _checked(request)
    await blocking(
        core_of(request).annotations.delete_attachment,
        *_ids(request),
        request.headers.get("If-Match"),
        _revisions_checked(request),
    )
    return web.json_response({})


async def attachment_detail(request: web.Request) -> web.Response:
    return await _attachment_detail(request, request.match_info["what"])


async def verify_md5(request: web.Request) -> web.Response:
    return await _attachment_detail(request, "verify-md5")


async def _attachment_detail(request: web.Request, what: str) -> web.Response:
    await _checked(request)
    annotations = core_of(request).annotations
    resource_id, name = _ids(request)
    if what in ("data", "compressed-data"):
        revision = await blocking(annotations.attachment_revision, resource_id, name)
        if (not_modified := _not_modified(request, revision)) is not None:
            return not_modified
        data = await blocking(
            annotations.attachment_data, resource_id, name, raw=what == "compressed-data"
        )
        mime = annotations.mime_type_of(annotations.content_type_of(name))
        return _revised(web.Response(body=data, content_type=mime), revision)
    info = await blocking(annotations.attachment_info, resource_id, name)
    if what == "verify-md5":
        data = await blocking(annotations.attachment_data, resource_id, name)
        if hashlib.md5(data).hexdigest() != info.md5:
            raise BadRequest("the attachment's MD5 does not match: it is damaged")
        return web.json_response({})
    values = {
        "size": str(info.size),
        "md5": info.md5,
        "compressed-size": str(info.compressed_size),
        "compressed-md5": info.compressed_md5,
        "is-compressed": "1" if info.compressed else "0",
    }
    return web.Response(text=values[what], content_type="text/plain")


async def get_protected(request: web.Request) -> web.Response:
    protected = await blocking(core_of(request).annotations.is_protected, request.match_info["id"])
    return web.Response(text="1" if protected else "0", content_type="text/plain")


async def put_protected(request: web.Request) -> web.Response:
    body = (await request.content.read(16)).strip()
    if body not in (b"0", b"1"):
        raise BadRequest("send 0 or 1")
    await blocking(
        core_of(request).annotations.set_protected, request.match_info["id"], body == b"1"
    )
    return web.json_response({})


def setup_routes(app: web.Application) -> None:
    route = app.router
    route.add_get(f"/{_LEVEL}/{{id}}/metadata", list_metadata)
    route.add_get(f"/{_LEVEL}/{{id}}/metadata/{{name}}", get_metadata)
    route.add_put(f"/{_LEVEL}/{{id}}/metadata/{{name}}", put_metadata)
    route.add_delete(f"/{_LEVEL}/{{id}}/metadata/{{name}}", delete_metadata)
    route.add_get(f"/{_LEVEL}/{{id}}/attachments", list_attachments)
    route.add_get(f"/{_LEVEL}/{{id}}/attachments/{{name}}", attachment_operations)
    route.add_put(f"/{_LEVEL}/{{id}}/attachments/{{name}}", put_attachment)
    route.add_delete(f"/{_LEVEL}/{{id}}/attachments/{{name}}", delete_attachment)
    what = "{what:data|compressed-data|size|md5|compressed-size|compressed-md5|is-compressed}"
    route.add_get(f"/{_LEVEL}/{{id}}/attachments/{{name}}/{what}", attachment_detail)
    route.add_post(f"/{_LEVEL}/{{id}}/attachments/{{name}}/verify-md5", verify_md5)
    route.add_get("/patients/{id}/protected", get_protected)
    route.add_put("/patients/{id}/protected", put_protected)
