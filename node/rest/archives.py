"""Archives asked for with a POST, as Orthanc has them: of one resource or of several,
streamed at once, or made by a job and fetched later from ``/jobs/{id}/archive``.

- ``POST /{level}/{id}/archive`` and ``POST /tools/create-archive`` take
  ``{"Resources": [...], "Synchronous": false, "Filename": ...}`` (or a bare list);
- a job writes its ZIP under ``data_dir/archives``; only the newest archives are kept
  (Orthanc's ``MediaArchiveSize``), older ones go as new ones are made.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.jobs import JobContext
from pacsnode.node.rest.archive import instances_of_all, stream_refs, write_archive
from pacsnode.node.rest.context import CONFIG, JOBS, blocking, core_of
from pacsnode.node.rest.params import json_body

_KEPT_ARCHIVES = 1
_MIB = 1024 * 1024
_spool_lock = threading.Lock()


def _spool(request: web.Request) -> Path:
    return Path(request.app[CONFIG].data_dir) / "archives"


def _options(body: Any, resource: str | None) -> tuple[list[str], bool, str]:
    """(resources, asynchronous, file name) from Orthanc's archive request bodies."""
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
    filename = str(body.get("Filename") or "archive.zip")
    return resources, asynchronous, filename


def _make_archive(
    core: NodeCore, resources: list[str], spool: Path, context: JobContext
) -> dict[str, Any]:
    job_id = context.job_id
    refs = instances_of_all(core, resources)
    spool.mkdir(parents=True, exist_ok=True)
    partial = spool / f".{job_id}.zip.part"
    with open(partial, "wb") as handle:
        uncompressed = write_archive(core, refs, handle, threading.Event())
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


async def _answer(
    request: web.Request, resources: list[str], asynchronous: bool, filename: str
) -> web.StreamResponse:
    core = core_of(request)
    refs = await blocking(instances_of_all, core, resources)  # unknown ids: 404 now
    if not asynchronous:
        return await stream_refs(request, core, refs, filename)
    spool = _spool(request)

    def work(context: JobContext) -> dict[str, Any]:
        return _make_archive(core, resources, spool, context)

    job = request.app[JOBS].submit("Archive", {"Resources": resources, "Filename": filename}, work)
    return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})


async def post_resource_archive(request: web.Request) -> web.StreamResponse:
    body = await json_body(request) if request.can_read_body else {}
    resources, asynchronous, filename = _options(body, request.match_info["id"])
    return await _answer(request, resources, asynchronous, filename)


async def create_archive(request: web.Request) -> web.StreamResponse:
    resources, asynchronous, filename = _options(await json_body(request), None)
    return await _answer(request, resources, asynchronous, filename)


async def job_archive(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    request.app[JOBS].get(job_id)  # NotFound for an unknown job
    path = _spool(request) / f"{job_id}.zip"
    if not path.is_file():
        raise NotFound(f"job {job_id} has no archive (not done, or replaced by a newer one)")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{job_id}.zip"',
        },
    )


def setup_routes(app: web.Application) -> None:
    level = "{level:patients|studies|series|instances}"
    app.router.add_post(f"/{level}/{{id}}/archive", post_resource_archive)
    app.router.add_post("/tools/create-archive", create_archive)
    app.router.add_get("/jobs/{id}/archive", job_archive)
