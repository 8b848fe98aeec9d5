"""``/peers``: configured peering partners, their state, and replication on demand."""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.rest.app import REPLICATOR, blocking


async def list_peers(request: web.Request) -> web.Response:
    replicator = request.app[REPLICATOR]
    if "expand" in request.query:
        return web.json_response(
            {name: await blocking(replicator.describe, name) for name in replicator.names()}
        )
    return web.json_response(replicator.names())


async def show_peer(request: web.Request) -> web.Response:
    return web.json_response(
        await blocking(request.app[REPLICATOR].describe, request.match_info["name"])
    )


async def sync_peer(request: web.Request) -> web.Response:
    """Replicate now, as a job; ``?wait`` answers when it has finished."""
    job = request.app[REPLICATOR].sync(request.match_info["name"])
    if "wait" in request.query:
        await asyncio.to_thread(job.finished.wait)
        return web.json_response(job.as_json(), status=200 if job.error is None else 502)
    return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})


async def identity(request: web.Request) -> web.Response:
    return web.json_response({"Fingerprint": request.app[REPLICATOR].identity.fingerprint})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/peers", list_peers)
    app.router.add_get("/peers/{name}", show_peer)
    app.router.add_post("/peers/{name}/sync", sync_peer)
    app.router.add_get("/tools/identity", identity)
