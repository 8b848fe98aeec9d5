"""The peering listener: protocol v1 over mutual TLS, answered from ``NodeForPeers``.

Endpoints (JSON unless said otherwise; every one needs a pinned client certificate):

- ``GET  /peer/v1/hello``: node id, protocol version, capabilities
- ``GET  /peer/v1/changes?since=N&limit=M``: studies changed after cursor N (pull)
- ``GET  /peer/v1/studies/{S}/inventory``: SOP Instance UID -> digest (pull or push)
- ``POST /peer/v1/studies/{S}/export``: body ``{"instances": [...]}`` or ``{}``; answers
  the study ZIP with ``X-Content-SHA256`` (pull)
- ``POST /peer/v1/studies/{S}/import``: body a study ZIP, header ``X-Content-SHA256``;
  answers what was added, already stored, or in conflict (push)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from peer.interface import NodeForPeers
from peer.tls import UntrustedPeer, check_pinned, peer_fingerprint

log = logging.getLogger(__name__)
T = TypeVar("T")
PROTOCOL_VERSION = 1
CAPABILITIES = ["inventory", "partial-export", "sha256"]

NODE = web.AppKey("node", object)
NODE_ID = web.AppKey("node_id", str)
PEERS = web.AppKey("peers", dict)  # name -> (fingerprint, may_push, may_pull)
_CHUNK = 1 << 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"HttpStatus": status, "ErrorCode": code, "Message": message}, status=status
    )


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(functools.partial(fn, *args))


@web.middleware
async def pinned_peers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    pins = {name: entry[0] for name, entry in request.app[PEERS].items()}
    try:
        request["peer"] = check_pinned(peer_fingerprint(ssl_object), pins)
    except UntrustedPeer as exc:
        return _error(403, "untrusted-peer", str(exc))
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # a domain error from the node, or a bad ZIP
        status = int(getattr(exc, "http_status", 500))
        code = str(getattr(exc, "code", "internal-error"))
        if status >= 500:
            log.exception("peer request %s failed", request.path)
        return _error(status, code, str(getattr(exc, "message", exc)))


def _allowed(request: web.Request, *, push: bool = False, pull: bool = False) -> None:
    _, may_push, may_pull = request.app[PEERS][request["peer"]]
    if (
        (push and not may_push)
        or (pull and not may_pull)
        or (not push and not pull and not (may_push or may_pull))
    ):
        raise web.HTTPForbidden(reason="this peer may not do that")


def _node(request: web.Request) -> NodeForPeers:
    return request.app[NODE]  # type: ignore[return-value]


async def hello(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "NodeId": request.app[NODE_ID],
            "Protocol": PROTOCOL_VERSION,
            "Capabilities": CAPABILITIES,
            "YouAre": request["peer"],
        }
    )


async def changes(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    try:
        since = int(request.query.get("since", "0"))
        limit = max(1, min(int(request.query.get("limit", "500")), 5000))
    except ValueError:
        return _error(400, "bad-request", "since and limit must be integers")
    batch = await _blocking(_node(request).study_changes, since, limit)
    return web.json_response(
        {
            "Changes": [{"Seq": c.seq, "StudyInstanceUID": c.study_uid} for c in batch.changes],
            "Last": batch.last,
            "Done": batch.done,
        }
    )


async def inventory(request: web.Request) -> web.Response:
    _allowed(request)
    found = await _blocking(_node(request).inventory, request.match_info["study"])
    return web.json_response({"Instances": found})


async def export(request: web.Request) -> web.StreamResponse:
    _allowed(request, pull=True)
    body = await request.json() if request.can_read_body else {}
    wanted = body.get("instances") if isinstance(body, dict) else None
    chosen = set(map(str, wanted)) if isinstance(wanted, list) else None
    with tempfile.TemporaryFile() as handle:
        await _blocking(_node(request).write_study, request.match_info["study"], chosen, handle)
        digest = await _blocking(_sha256_of, handle)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "X-Content-SHA256": digest,
                "Content-Length": str(size),
            }
        )
        await response.prepare(request)
        while chunk := await _blocking(handle.read, _CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response


def _sha256_of(handle: Any) -> str:
    handle.seek(0)
    hasher = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


async def import_study(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    expected = request.headers.get("X-Content-SHA256", "").lower()
    if not expected:
        return _error(400, "bad-request", "X-Content-SHA256 is required")
    with tempfile.NamedTemporaryFile(suffix=".zip") as handle:
        hasher = hashlib.sha256()
        async for chunk in request.content.iter_chunked(_CHUNK):
            hasher.update(chunk)
            await _blocking(handle.write, chunk)
        await _blocking(handle.flush)
        if hasher.hexdigest() != expected:
            return _error(400, "checksum-mismatch", "the ZIP does not match its SHA-256")
        summary = await _blocking(_node(request).merge_study, Path(handle.name), request["peer"])
    if summary.study_uid != request.match_info["study"]:
        log.warning(
            "peer %s sent study %s under %s",
            request["peer"],
            summary.study_uid,
            request.match_info["study"],
        )
    return web.json_response(
        {
            "StudyInstanceUID": summary.study_uid,
            "Added": summary.added,
            "AlreadyStored": summary.already_stored,
            "Conflicts": summary.conflicts,
        }
    )


def create_peer_app(
    node: NodeForPeers, node_id: str, peers: dict[str, tuple[str, bool, bool]]
) -> web.Application:
    """``peers`` maps name to (pinned fingerprint, may push to us, may pull from us)."""
    app = web.Application(middlewares=[pinned_peers_only], client_max_size=1024**4)
    app[NODE] = node
    app[NODE_ID] = node_id
    app[PEERS] = peers
    app.router.add_get("/peer/v1/hello", hello)
    app.router.add_get("/peer/v1/changes", changes)
    app.router.add_get("/peer/v1/studies/{study}/inventory", inventory)
    app.router.add_post("/peer/v1/studies/{study}/export", export)
    app.router.add_post("/peer/v1/studies/{study}/import", import_study)
    return app
