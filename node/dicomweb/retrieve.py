"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data, as stored.

Study metadata is the stored gzip entry, sent as it is to clients that accept gzip.
Frames and bulk data are stored as single-part multipart files: one is sent untouched,
with its own boundary in the header; several are re-framed under one boundary.
Instances are regenerated as P10 one at a time and streamed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.dicomweb import metadata, multipart
from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.dicomweb.negotiation import (
    DICOM,
    DICOM_JSON,
    accepts_dicom,
    accepts_json,
    choose_part,
    parse_accept,
)
from pacsnode.node.dicomweb.paths import frame_numbers, instance_refs, study_url, uid
from pacsnode.node.dicomweb.rendering import parse_options, render
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.ids import Level
from pacsnode.node.index import InstanceRef
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.storage.gzip_parts import DeflatedPart
from pacsnode.storage.multipart import Part


def _accepts_gzip(request: web.Request) -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*") and "q=0" not in params.replace(" ", ""):
            return True
    return False


def _json_accepted(request: web.Request) -> None:
    if not accepts_json(parse_accept(request.headers.get("Accept"))):
        raise NotAcceptable("metadata is sent as application/dicom+json only")


# --- metadata ------------------------------------------------------------------------------


async def study_metadata(request: web.Request) -> web.Response:
    _json_accepted(request)
    study_uid = uid(request, "study")
    packed = await blocking(_study_metadata_gzip, core_of(request), study_uid)
    gzipped = _accepts_gzip(request)
    return _json_response(packed if gzipped else gzip.decompress(packed), gzipped)


def _study_metadata_gzip(core: NodeCore, study_uid: str) -> bytes:
    if not core.find(Level.STUDY, {"StudyInstanceUID": study_uid}):
        raise NotFound(f"no study {study_uid}")
    return core.study_metadata_gzip(study_uid)


def _json_body(value: Any, gzipped: bool) -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    # level 1: a series of 300 CT slices (500 KB of JSON) packs to a tenth in ~3 ms
    return gzip.compress(body, compresslevel=1, mtime=0) if gzipped else body


def _json_response(body: bytes, gzipped: bool) -> web.Response:
    headers = {"Content-Type": DICOM_JSON, "Vary": "Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _series_metadata_body(core: NodeCore, ref: InstanceRef, base: str, gzipped: bool) -> bytes:
    items = metadata.of_series(core.study_metadata(ref.study_uid), ref.series_uid)
    return _json_body([metadata.absolute_bulk_uris(item, base) for item in items], gzipped)


def _instance_metadata_body(core: NodeCore, ref: InstanceRef, base: str, gzipped: bool) -> bytes:
    item = core.instance_json(ref)
    return _json_body([metadata.absolute_bulk_uris(item, base)], gzipped)


def _metadata_handler(
    build: Callable[[NodeCore, InstanceRef, str, bool], bytes],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        _json_accepted(request)
        ref = (await instance_refs(request))[0]
        gzipped = _accepts_gzip(request)
        base = study_url(request, ref.study_uid)
        return _json_response(await blocking(build, core_of(request), ref, base, gzipped), gzipped)

    return handler


series_metadata = _metadata_handler(_series_metadata_body)
instance_metadata = _metadata_handler(_instance_metadata_body)


# --- frames and bulk data ---------------------------------------------------------------------


def _parts_response(request: web.Request, parts: list[Part]) -> web.Response:
    accepted = parse_accept(request.headers.get("Accept"))
    single = len(parts) == 1
    choices = [choose_part(accepted, p.media_type, p.transfer_syntax, single=single) for p in parts]
    first = parts[0]
    if not choices[0].multipart:
        value = first.media_type
        if first.transfer_syntax:
            value += f"; transfer-syntax={first.transfer_syntax}"
        return web.Response(body=first.payload, headers={"Content-Type": value})
    if len(parts) == 1:  # the stored file is already the answer
        return web.Response(
            body=first.wrapped,
            headers={"Content-Type": _with_syntax(first.content_type, first.transfer_syntax)},
        )
    body, boundary = multipart.body_of_parts(parts)
    media_types = {part.media_type for part in parts}
    part_type = media_types.pop() if len(media_types) == 1 else "application/octet-stream"
    return web.Response(
        body=body, headers={"Content-Type": multipart.content_type(part_type, boundary)}
    )


def _deflated_response(request: web.Request, part: DeflatedPart) -> web.Response:
    """The stored part file as it is on disk, deflated, as a gzip body."""
    accepted = parse_accept(request.headers.get("Accept"))
    if not choose_part(accepted, part.media_type, part.transfer_syntax).multipart:
        raise NotAcceptable("a frame stored deflated is sent as multipart/related")
    headers = {
        "Content-Type": part.content_type,
        "Content-Encoding": "gzip",
        "Vary": "Accept-Encoding",
    }
    return web.Response(body=part.gzip_body, headers=headers)


def _with_syntax(value: str, transfer_syntax: str) -> str:
    return f"{value}; transfer-syntax={transfer_syntax}" if transfer_syntax else value


async def frames(request: web.Request) -> web.Response:
    ref = (await instance_refs(request))[0]
    core = core_of(request)
    if "frames" in request.match_info:
        numbers = frame_numbers(request.match_info["frames"])
        if len(numbers) == 1 and _accepts_gzip(request):  # a viewer's frame-by-frame reads
            deflated = await blocking(core.instance_frame_gzip, ref, numbers[0])
            if deflated is not None:
                return _deflated_response(request, deflated)
        parts = await blocking(lambda: [core.instance_frame(ref, n) for n in numbers])
    else:  # the BulkDataURI of Pixel Data: every frame
        parts = await blocking(core.instance_frames, ref)
        if not parts:
            raise NotFound("this instance has no pixel data")
    return _parts_response(request, parts)


async def bulk_data(request: web.Request) -> web.Response:
    ref = (await instance_refs(request))[0]
    key = request.match_info["key"]
    if not key.replace(".", "").replace("-", "").isalnum():
        raise BadRequest(f"{key[:40]!r} is not a bulk data key")
    part = await blocking(core_of(request).instance_bulk, ref, key)
    return _parts_response(request, [part])


# --- instances ------------------------------------------------------------------------------


def _check_syntaxes(request: web.Request, refs: list[InstanceRef]) -> None:
    accepted = parse_accept(request.headers.get("Accept"))
    for syntax in {ref.transfer_syntax for ref in refs}:
        if not accepts_dicom(accepted, syntax):
            raise NotAcceptable(
                f"instances are stored in transfer syntax {syntax}, which the request does "
                "not accept; pacsnode sends them as stored (ask for transfer-syntax=*)"
            )


async def instances(request: web.Request) -> web.StreamResponse:
    """Study, series or instance retrieve: each instance as P10, streamed one by one."""
    refs = await instance_refs(request)
    _check_syntaxes(request, refs)
    core = core_of(request)
    boundary = multipart.new_boundary()
    response = web.StreamResponse(headers={"Content-Type": multipart.content_type(DICOM, boundary)})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for ref in refs:
        data = await blocking(core.instance_p10, ref)
        await response.write(multipart.part_head(boundary, DICOM, ref.transfer_syntax))
        await response.write(data)
        await response.write(b"\r\n")
    await response.write(multipart.closing(boundary))
    await response.write_eof()
    return response


# --- rendered images and thumbnails -------------------------------------------------------


def _representative(refs: list[InstanceRef]) -> InstanceRef:
    """The instance a study or series thumbnail shows: the middle one, often the most
    telling slice of a series."""
    return refs[len(refs) // 2]


async def rendered(request: web.Request) -> web.Response:
    refs = await instance_refs(request)
    thumbnail = request.path.endswith("/thumbnail")
    accepted = [entry.media_type for entry in parse_accept(request.headers.get("Accept"))]
    options = parse_options(request.query, accepted, thumbnail)
    numbers = frame_numbers(request.match_info.get("frames", "1"))
    dataset = await blocking(core_of(request).instance_dataset, _representative(refs))
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if numbers[0] > count:
        raise NotFound(f"frame {numbers[0]} of an instance with {count}")
    body = await blocking(render, dataset, numbers[0] - 1, options)
    return web.Response(body=body, headers={"Content-Type": options.media_type})


def setup_routes(app: web.Application, root: str) -> None:
    study = root + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    app.router.add_get(study, instances)
    app.router.add_get(series, instances)
    app.router.add_get(instance, instances)
    app.router.add_get(study + "/metadata", study_metadata)
    app.router.add_get(series + "/metadata", series_metadata)
    app.router.add_get(instance + "/metadata", instance_metadata)
    app.router.add_get(instance + "/frames", frames)
    app.router.add_get(instance + "/frames/{frames}", frames)
    app.router.add_get(instance + "/bulkdata/{key}", bulk_data)
    for resource in (instance, instance + "/frames/{frames}"):
        app.router.add_get(resource + "/rendered", rendered)
        app.router.add_get(resource + "/thumbnail", rendered)
    app.router.add_get(study + "/thumbnail", rendered)
    app.router.add_get(series + "/thumbnail", rendered)
