"""``/modalities``: known DICOM peers, C-ECHO and C-STORE to them (as jobs); ``/jobs``.

Modalities come from the configuration; changes made here last until the
node restarts (put them in the TOML file to keep them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pacsnode.node.config import Modality
from pacsnode.node.dicom import scu
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.hierarchy import instances_under
from pacsnode.node.jobs import JobContext, JobRegistry
from pacsnode.node.rest.app import CONFIG, JOBS, MODALITIES, blocking, core_of


def _modality(request: web.Request) -> Modality:
    name = request.match_info["name"]
    modality = request.app[MODALITIES].get(name)
    if modality is None:
        raise NotFound(f"no modality {name}")
    return modality


def _shown(modality: Modality) -> dict[str, Any]:
    return {"AET": modality.aet, "Host": modality.host, "Port": modality.port}


async def list_modalities(request: web.Request) -> web.Response:
    known: dict[str, Modality] = request.app[MODALITIES]
    if "expand" in request.query:
        return web.json_response({name: _shown(m) for name, m in sorted(known.items())})
    return web.json_response(sorted(known))


async def show_modality(request: web.Request) -> web.Response:
    return web.json_response(_shown(_modality(request)))


def _parse_modality(name: str, body: Any) -> Modality:
    if isinstance(body, list) and len(body) >= 3:
        body = {"AET": body[0], "Host": body[1], "Port": body[2]}
    if not isinstance(body, dict):
        raise BadRequest('send {"AET": ..., "Host": ..., "Port": ...}')
    aet, host, port = body.get("AET"), body.get("Host"), body.get("Port")
    if not isinstance(aet, str) or not 0 < len(aet) <= 16:
        raise BadRequest("AET must be 1..16 characters")
    if not isinstance(host, str) or not host:
        raise BadRequest("Host must be a host name or address")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise BadRequest("Port must be 1..65535")
    return Modality(name, aet, host, port)


async def put_modality(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    name = request.match_info["name"]
    request.app[MODALITIES][name] = _parse_modality(name, body)
    return web.json_response({})


async def delete_modality(request: web.Request) -> web.Response:
    _modality(request)
    del request.app[MODALITIES][request.match_info["name"]]
    return web.json_response({})


async def echo(request: web.Request) -> web.Response:
    await blocking(scu.echo, request.app[CONFIG].dicom.aet, _modality(request))
    return web.json_response({})


def _resources_of(body: Any) -> tuple[list[str], bool]:
    if isinstance(body, str):
        return [body], False
    if isinstance(body, list):
        return [str(item) for item in body], False
    if isinstance(body, dict) and isinstance(body.get("Resources"), list):
        return [str(item) for item in body["Resources"]], bool(body.get("Asynchronous"))
    raise BadRequest('send a resource id, a list of them, or {"Resources": [...]}')


async def store(request: web.Request) -> web.Response:
    modality = _modality(request)
    text = (await request.text()).strip()
    try:
        body: Any = await request.json() if text.startswith(("[", "{", '"')) else text
    except ValueError:
        raise BadRequest("the body must be JSON or a resource id") from None
    resources, asynchronous = _resources_of(body)
    core = core_of(request)

    def records() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for resource_id in resources:
            core.resource(resource_id)
            found.extend(core.read(lambda txn, rid=resource_id: instances_under(txn, rid)))
        return found

    chosen = await blocking(records)
    aet = request.app[CONFIG].dicom.aet

    def work(context: JobContext) -> dict[str, Any]:
        return scu.send(core, aet, modality, chosen, context)

    job = request.app[JOBS].submit(
        "DicomModalityStore", {"Modality": modality.name, "Resources": resources}, work
    )
    if asynchronous:
        return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    await asyncio.to_thread(job.finished.wait)
    return web.json_response(job.as_json(), status=200 if job.error is None else 502)


async def list_jobs(request: web.Request) -> web.Response:
    registry: JobRegistry = request.app[JOBS]
    if "expand" in request.query:
        return web.json_response([registry.get(job_id).as_json() for job_id in registry.ids()])
    return web.json_response(registry.ids())


async def show_job(request: web.Request) -> web.Response:
    return web.json_response(request.app[JOBS].get(request.match_info["id"]).as_json())


async def cancel_job(request: web.Request) -> web.Response:
    request.app[JOBS].cancel(request.match_info["id"])
    return web.json_response({})


def setup_routes(app: web.Application) -> None:
    route = app.router
    route.add_get("/modalities", list_modalities)
    route.add_get("/modalities/{name}", show_modality)
    route.add_put("/modalities/{name}", put_modality)
    route.add_delete("/modalities/{name}", delete_modality)
    route.add_post("/modalities/{name}/echo", echo)
    route.add_post("/modalities/{name}/store", store)
    route.add_get("/jobs", list_jobs)
    route.add_get("/jobs/{id}", show_job)
    route.add_post("/jobs/{id}/cancel", cancel_job)
