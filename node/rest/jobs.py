"""``/jobs``: long work (sending to a modality or a peer, syncing) and its progress."""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.jobs import JobRegistry
from pacsnode.node.rest.context import JOBS


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
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", show_job)
    app.router.add_post("/jobs/{id}/cancel", cancel_job)
