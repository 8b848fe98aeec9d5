"""Archives and DICOM media asked for as Orthanc has them: of one resource or of several,
streamed at once, or made by a job and fetched later from ``/jobs/{id}/archive``.

- ``POST /{level}/{id}/archive|media`` and ``POST /tools/create-archive|create-media`` take
  ``{"Resources": [...], "Synchronous": false, "Filename": ..., "Extended": ...}`` (or a
  bare list); ``GET /{level}/{id}/media[?extended]``, ``/tools/create-media-extended`` and
  ``GET /tools/create-archive|create-media?resources=a,b`` are the other spellings;
- media is a ZIP of ``IMAGES/IMn`` files and their DICOMDIR (:mod:`storage.dicomdir`);
- a job writes its ZIP under ``data_dir/archives``; only the newest archives are kept
  (Orthanc's ``MediaArchiveSize``), older ones go as new ones are made, and at start
  those of no known job go (jobs do not outlive the process; a crash mid-job leaves a
  half-written one).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.jobs import JobContext
from pacsnode.node.rest.archive import Media, instances_of_all, stream_refs, write_archive
from pacsnode.node.rest.context import CONFIG, JOBS, blocking, core_of
from pacsnode.node.rest.params import json_body, level_of

_KEPT_ARCHIVES = 1
_MIB = 1024 * 1024
_spool_lock = threading.Lock()
_HEADER_UNSAFE = re.compile(r'[\x00-\x1f"\\/]+')


def _spool(request: web.Request) -> Path:
    return Path(request.app[CONFIG].data_dir) / "archives"


@dataclass(frozen=True)
class _Request:
    resources: list[str]
    asynchronous: bool
    filename: str
    media: Media


def _options(body: Any, resource: str | None, media: Media) -> _Request:
    """What an Orthanc archive or media request body asks for."""
    if isinstance(body, list):
        body = {"Resources": body}
    if body is None or body == "":
        body = {}
    if not isinstance(body, dict):
        raise BadRequest('send {"Resources": [ids...]} or a list of resource ids')
    resources = [resource] if resource else body.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise BadRequest("'Resources' must be a list of resource ids")
    asynchronous = bool(body.get("Asynchronous", not body.get("Synchronous", True)))
    if media is Media.MEDIA and body.get("Extended"):
        media = Media.EXTENDED_MEDIA
    return _Request(resources, asynchronous, _filename(body.get("Filename")), media)


def _filename(requested: Any) -> str:
    """The download's name: what was asked for, less what would break the header's quoting."""
    name = _HEADER_UNSAFE.sub("", str(requested or "")).strip()
    return name or "archive.zip"


def _make_archive(
    core: NodeCore, asked: _Request, spool: Path, context: JobContext
) -> dict[str, Any]:
    job_id = context.job_id
    refs = instances_of_all(core, asked.resources)
    spool.mkdir(parents=True, exist_ok=True)
    partial = spool / f".{job_id}.zip.part"

    def written(count: int) -> None:
        context.progress(count, len(refs))  # raises JobCancelled once the job is cancelled

    try:
        with open(partial, "wb") as handle:
            media = asked.media
            uncompressed = write_archive(core, refs, handle, threading.Event(), media, written)
    except BaseException:
        partial.unlink(missing_ok=True)  # a cancelled or failed job leaves no half archive
        raise
    os.replace(partial, spool / f"{job_id}.zip")
    _prune(spool)
    size = (spool / f"{job_id}.zip").stat().st_size
    context.progress(1, 1)
    return {
        "ArchiveSizeMB": size // _MIB,
        "ArchiveSize": str(size),
        "InstancesCount": len(refs),
        "UncompressedSizeMB": uncompressed // _MIB,
        "UncompressedSize": str(uncompressed),
    }


def _prune(spool: Path) -> None:
    """Keep the newest archives only: each one is a whole copy of what it holds."""
    with _spool_lock:
        archives = sorted(spool.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in archives[_KEPT_ARCHIVES:]:
            old.unlink(missing_ok=True)


async def _answer(request: web.Request, asked: _Request) -> web.StreamResponse:
    core = core_of(request)
    refs = await blocking(instances_of_all, core, asked.resources)  # unknown ids: 404 now
    if not asked.asynchronous:
        return await stream_refs(request, core, refs, asked.filename, asked.media)
    spool = _spool(request)

    def work(context: JobContext) -> dict[str, Any]:
        return _make_archive(core, asked, spool, context)

    job_type = "Archive" if asked.media is Media.ARCHIVE else "Media"
    description = {
        "Resources": asked.resources,
        "Filename": asked.filename,
        "Extended": asked.media is Media.EXTENDED_MEDIA,
    }
    job = request.app[JOBS].submit(job_type, description, work)
    return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})


def _media_of_path(request: web.Request) -> Media:
    """Archive or media from the route's last segment, extended from the query string."""
    kind = request.match_info["kind"]
    if kind == "archive":
        return Media.ARCHIVE
    if kind == "media-extended" or "extended" in request.query:
        return Media.EXTENDED_MEDIA
    return Media.MEDIA


async def post_resource(request: web.Request) -> web.StreamResponse:
    body = await json_body(request) if request.can_read_body else {}
    asked = _options(body, request.match_info["id"], _media_of_path(request))
    return await _answer(request, asked)


async def get_resource_media(request: web.Request) -> web.StreamResponse:
    resource_id = request.match_info["id"]
    await blocking(core_of(request).resource, resource_id, level_of(request))  # 404s
    asked = _options({}, resource_id, _media_of_path(request))
    return await _answer(request, replace(asked, filename=f"{resource_id}.zip"))


async def create(request: web.Request) -> web.StreamResponse:
    asked = _options(await json_body(request), None, _media_of_path(request))
    return await _answer(request, asked)


async def create_from_query(request: web.Request) -> web.StreamResponse:
    """``GET /tools/create-archive?resources=a,b``: a link a browser can follow."""
    resources = [r for r in request.query.get("resources", "").split(",") if r]
    if not resources:
        raise BadRequest("give the resources as ?resources=id1,id2")
    body = {"Resources": resources, "Filename": request.query.get("filename")}
    return await _answer(request, _options(body, None, _media_of_path(request)))


async def job_archive(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    job = request.app[JOBS].get(job_id)  # NotFound for an unknown job
    path = _spool(request) / f"{job_id}.zip"
    if not path.is_file():
        raise NotFound(f"job {job_id} has no archive (not done, or replaced by a newer one)")
    filename = _filename(job.description.get("Filename") or f"{job_id}.zip")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


async def _clear_stale(app: web.Application) -> None:
    """Remove the archives no job of this app knows: copies of patient data nobody can
    fetch any more, and those a crash (SIGKILL, power) cut off half-written."""
    spool = Path(app[CONFIG].data_dir) / "archives"
    known = {f"{job_id}.zip" for job_id in app[JOBS].ids()}

    def clear() -> None:
        if spool.is_dir():
            for path in spool.iterdir():
                if path.name not in known and path.is_file():
                    path.unlink(missing_ok=True)

    await blocking(clear)


def setup_routes(app: web.Application) -> None:
    app.on_startup.append(_clear_stale)
    level = "{level:patients|studies|series|instances}"
    app.router.add_post(f"/{level}/{{id}}/{{kind:archive|media}}", post_resource)
    app.router.add_get("/{level:patients|studies|series}/{id}/{kind:media}", get_resource_media)
    tools = "/tools/create-{kind:archive|media|media-extended}"
    app.router.add_post(tools, create)
    app.router.add_get(tools, create_from_query)
    app.router.add_get("/jobs/{id}/archive", job_archive)
