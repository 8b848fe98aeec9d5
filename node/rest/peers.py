"""``/peers``: configured peering partners, their state, and replication on demand."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.rest.context import CONFIG, REGISTRY, REPLICATOR, blocking
from pacsnode.node.rest.params import flag_param, json_body, json_or_text
from pacsnode.node.settings import PeerSettings

if TYPE_CHECKING:
    from pacsnode.node.replication import Replicator


def _replicator(request: web.Request, name: str | None = None) -> Replicator:
    replicator = request.app[REPLICATOR].current
    if replicator is None:
        raise NotFound(f"no peer {name}" if name else "no peer is configured")
    return replicator


async def list_peers(request: web.Request) -> web.Response:
    names = list(request.app[REGISTRY].peers())
    if not flag_param(request, "expand"):
        return web.json_response(names)
    if not names:
        return web.json_response({})
    replicator = _replicator(request)
    return web.json_response({name: await blocking(replicator.describe, name) for name in names})


#: what GET /peers/{name} lists, as Orthanc does: the operations under it
_OPERATIONS = ["configuration", "store", "store-straight", "sync", "system"]


async def show_peer(request: web.Request) -> web.Response:
    request.app[REGISTRY].peer(request.match_info["name"])  # NotFound if unknown
    return web.json_response(_OPERATIONS)


async def show_configuration(request: web.Request) -> web.Response:
    """The peer's settings (secrets left out) and its replication state, as ``?expand``."""
    name = request.match_info["name"]
    return web.json_response(await blocking(_replicator(request, name).describe, name))


async def sync_peer(request: web.Request) -> web.Response:
    """Replicate now, as a job; ``?wait`` answers when it has finished."""
    job = _replicator(request, request.match_info["name"]).sync(request.match_info["name"])
    if "wait" in request.query:
        await asyncio.to_thread(job.finished.wait)
        return web.json_response(job.as_json(), status=200 if job.error is None else 502)
    return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})


async def identity(request: web.Request) -> web.Response:
    from pacsnode.node.replication import node_identity

    identity = await blocking(node_identity, request.app[CONFIG])
    return web.json_response({"Fingerprint": identity.fingerprint})


async def store_to_peer(request: web.Request) -> web.Response:
    """Orthanc's POST /peers/{id}/store: a resource id, a list, or {"Resources": [...]}."""
    name = request.match_info["name"]
    body = await json_or_text(request)
    if isinstance(body, dict):
        asynchronous = bool(body.get("Asynchronous", not body.get("Synchronous", True)))
        resources = body.get("Resources")
    else:
        resources, asynchronous = ([body] if isinstance(body, str) else body), False
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise BadRequest('send a resource id, a list of them, or {"Resources": [...]}')
    job = await blocking(_replicator(request, name).store, name, resources)
    if asynchronous:
        return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    await asyncio.to_thread(job.finished.wait)
    return web.json_response(job.as_json(), status=200 if job.error is None else 502)


async def peer_system(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.json_response(await blocking(_replicator(request, name).peer_system, name))


async def store_straight(request: web.Request) -> web.Response:
    """POST a DICOM file to an Orthanc peer as it is (Orthanc's ``/store-straight``)."""
    name = request.match_info["name"]
    data = await request.read()
    if not data:
        raise BadRequest("send the DICOM file in the body")
    return web.json_response(await blocking(_replicator(request, name).store_straight, name, data))


def parse_peer(name: str, body: Any) -> PeerSettings:
    """Orthanc's forms: ``[Url]``, ``[Url, Username, Password]`` or ``{"Url", "Username",
    "Password", "RemoteSelf"}`` make an Orthanc peer; with ``"Fingerprint"`` a pacsnode one
    (``"Push"``, ``"Pull"``, ``"IntervalSeconds"`` optional)."""
    if isinstance(body, list):
        if len(body) not in (1, 3) or not all(isinstance(item, str) for item in body):
            raise BadRequest("send [Url] or [Url, Username, Password]")
        body = dict(zip(("Url", "Username", "Password"), body, strict=False))
    if not isinstance(body, dict) or not isinstance(body.get("Url"), str):
        raise BadRequest('send {"Url": ..., "Fingerprint": ...} or Orthanc\'s {"Url", ...}')
    fingerprint = body.get("Fingerprint")
    try:
        return PeerSettings(
            name=name,
            url=body["Url"],
            kind="pacsnode" if fingerprint else "orthanc",
            fingerprint=str(fingerprint or ""),
            username=body.get("Username"),
            password=body.get("Password"),
            push=bool(body.get("Push", True)),
            pull=bool(body.get("Pull", True)),
            interval_s=int(body.get("IntervalSeconds", 0)),
            remote_self=str(body.get("RemoteSelf") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"bad peer settings: {exc}") from None


async def put_peer(request: web.Request) -> web.Response:
    peer = parse_peer(request.match_info["name"], await json_body(request))
    # The first peer of a node configured without any makes the replicator, which then
    # follows the registry.
    await blocking(request.app[REPLICATOR].ensure)
    await blocking(request.app[REGISTRY].put_peer, peer)
    return web.json_response({})


async def delete_peer(request: web.Request) -> web.Response:
    await blocking(request.app[REGISTRY].delete_peer, request.match_info["name"])
    return web.json_response({})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/peers", list_peers)
    app.router.add_get("/peers/{name}", show_peer)
    app.router.add_get("/peers/{name}/configuration", show_configuration)
    app.router.add_get("/peers/{name}/system", peer_system)
    app.router.add_post("/peers/{name}/store-straight", store_straight)
    app.router.add_post("/peers/{name}/sync", sync_peer)
    app.router.add_post("/peers/{name}/store", store_to_peer)
    app.router.add_put("/peers/{name}", put_peer)
    app.router.add_delete("/peers/{name}", delete_peer)
    app.router.add_get("/tools/identity", identity)
