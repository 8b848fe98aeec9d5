"""The peering listener: protocol v1 over mutual TLS, answered from ``NodeForPeers``.

Every request needs a pinned client certificate; pull and push are permissions per peer.

- ``GET  /peer/v1/hello``: node id, protocol version, capabilities
- ``GET  /peer/v1/changes?since=N&limit=M[&query=JSON]``: studies changed after cursor N,
  optionally only those matching a ``/tools/find``-style query (pull)
- ``GET  /peer/v1/studies/{S}/inventory``: SOP Instance UID -> digest
- ``POST /peer/v1/studies/{S}/export`` ``{"instances": [...]}``: prepares a ZIP of those
  instances (all when absent); answers its id, size and SHA-256 (pull)
- ``GET|POST /peer/v1/studies/{S}/annotations``: user metadata, attachments and
  protection of the study's resources; POST adds what the receiver lacks
- ``GET|POST /peer/v1/deletions``: user deletions after a cursor; POST mirrors them,
  only when both sides set ``mirror_deletions`` for each other
- ``GET  /peer/v1/exports/{id}``: the ZIP, resumable with ``Range: bytes=N-``;
  ``DELETE`` when done (pull)
- ``POST /peer/v1/uploads`` ``{"Study", "Size", "SHA256"}``: starts an upload (push)
- ``PATCH /peer/v1/uploads/{id}`` with ``Upload-Offset: N``: writes a chunk at N;
  chunks may come in any order and over several connections at once. It and ``GET``
  answer ``Offset`` (bytes received from 0 without a gap) and ``Missing`` (the ranges
  still to send), to resume after a cut (push)
- ``POST /peer/v1/uploads/{id}/commit``: once nothing is missing, checks the SHA-256,
  validates and merges the ZIP whole; answers what was added, already stored, or in
  conflict (push)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from pacsnode.peer.digest import size_and_sha256
from pacsnode.peer.errors import UntrustedPeer
from pacsnode.peer.grants import PeerGrant
from pacsnode.peer.interface import NodeForPeers
from pacsnode.peer.ranges import Range, add_range, contiguous_prefix, missing_ranges
from pacsnode.peer.spool import Spool
from pacsnode.peer.tls import check_pinned, peer_fingerprint

log = logging.getLogger(__name__)
T = TypeVar("T")
PROTOCOL_VERSION = 1
CAPABILITIES = ["inventory", "partial-export", "sha256", "resumable", "parallel-upload"]

NODE = web.AppKey("node", object)
NODE_ID = web.AppKey("node_id", str)
# peer name -> what it may do; shared with the node, so a peer added or removed applies at once
PEERS = web.AppKey("peers", dict[str, PeerGrant])
SPOOL = web.AppKey("spool", Spool)
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
    pins = {name: grant.fingerprint for name, grant in request.app[PEERS].items()}
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
    if not request.app[PEERS][request["peer"]].permits(push=push, pull=pull):
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
        query = json.loads(request.query.get("query", "null"))
    except ValueError:
        return _error(400, "bad-request", "since and limit are integers, query is JSON")
    if query is not None and not isinstance(query, dict):
        return _error(400, "bad-request", "query must be a JSON object of keywords to values")
    batch = await _blocking(_node(request).study_changes, since, limit, query)
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


async def get_annotations(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    return web.json_response(
        await _blocking(_node(request).annotations, request.match_info["study"])
    )


async def put_annotations(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    document = await request.json()
    if not isinstance(document, dict):
        return _error(400, "bad-request", "annotations are a JSON object")
    added = await _blocking(_node(request).apply_annotations, document)
    return web.json_response({"Added": added})


async def get_deletions(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    try:
        since = int(request.query.get("since", "0"))
        limit = max(1, min(int(request.query.get("limit", "500")), 5000))
    except ValueError:
        return _error(400, "bad-request", "since and limit must be integers")
    batch = await _blocking(_node(request).deletions, since, limit)
    return web.json_response(
        {
            "Deletions": [
                {"Seq": d.seq, "ID": d.resource_id, "Level": d.level} for d in batch.deletions
            ],
            "Last": batch.last,
            "Done": batch.done,
        }
    )


async def post_deletions(request: web.Request) -> web.Response:
    """Mirror a peer's deletions, only if this node mirrors deletions with that peer."""
    _allowed(request, push=True)
    if not request.app[PEERS][request["peer"]].mirror_deletions:
        raise web.HTTPForbidden(reason="deletions are not mirrored with this peer")
    body = await request.json()
    ids = body.get("IDs") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return _error(400, "bad-request", 'send {"IDs": [resource ids]}')
    deleted = await _blocking(_node(request).mirror_deletions, ids, request["peer"])
    return web.json_response({"Deleted": deleted})


async def export(request: web.Request) -> web.Response:
    """Prepare the study (or the listed instances) as a ZIP to fetch with Range requests."""
    _allowed(request, pull=True)
    body = await request.json() if request.can_read_body else {}
    wanted = body.get("instances") if isinstance(body, dict) else None
    chosen = set(map(str, wanted)) if isinstance(wanted, list) else None
    spool: Spool = request.app[SPOOL]
    export_id, path = spool.new("exports")
    with open(path, "wb") as handle:
        await _blocking(_node(request).write_study, request.match_info["study"], chosen, handle)
    with open(path, "rb") as handle:
        size, digest = await _blocking(size_and_sha256, handle)
    return web.json_response({"Export": export_id, "Size": size, "SHA256": digest})


async def fetch_export(request: web.Request) -> web.StreamResponse:
    """The prepared ZIP; ``Range: bytes=N-`` resumes a cut-off download."""
    _allowed(request, pull=True)
    path = request.app[SPOOL].existing("exports", request.match_info["id"])
    return web.FileResponse(path, headers={"Content-Type": "application/zip"})


async def drop_export(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    request.app[SPOOL].existing("exports", request.match_info["id"]).unlink(missing_ok=True)
    return web.json_response({})


async def start_upload(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    body = await request.json()
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("SHA256"), str)
        or not isinstance(body.get("Size"), int)
        or body["Size"] < 0
    ):
        return _error(400, "bad-request", 'send {"Study", "Size", "SHA256"}')
    upload_id, path = request.app[SPOOL].new("uploads")
    path.touch()
    _save_upload_state(path, {**body, "Received": []})
    return web.json_response(_upload_progress(body["Size"], []) | {"Upload": upload_id})


def _upload_state(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.with_suffix(".json").read_text()))


def _save_upload_state(path: Path, state: dict[str, Any]) -> None:
    # Not fsynced: the spool is scratch space; a lost state only means sending again.
    path.with_suffix(".json").write_text(json.dumps(state))


def _received(state: dict[str, Any]) -> list[Range]:
    return [(int(low), int(high)) for low, high in state["Received"]]


def _upload_progress(size: int, received: list[Range]) -> dict[str, Any]:
    return {
        "Offset": contiguous_prefix(received),
        "Missing": [list(gap) for gap in missing_ranges(received, size)],
    }


async def upload_offset(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    path = request.app[SPOOL].existing("uploads", request.match_info["id"])
    state = _upload_state(path)
    return web.json_response(_upload_progress(int(state["Size"]), _received(state)))


async def write_upload_chunk(request: web.Request) -> web.Response:
    """Write a chunk at ``Upload-Offset``; a chunk cut off keeps what arrived, and the
    client asks what is missing and sends that again."""
    _allowed(request, push=True)
    path = request.app[SPOOL].existing("uploads", request.match_info["id"])
    size = int(_upload_state(path)["Size"])
    try:
        offset = int(request.headers.get("Upload-Offset", "-1"))
    except ValueError:
        offset = -1
    if not 0 <= offset <= size:
        return _error(409, "bad-offset", f"Upload-Offset must be within 0..{size}")
    position = offset
    descriptor = os.open(path, os.O_WRONLY)
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            if position + len(chunk) > size:
                return _error(400, "too-long", f"the upload is {size} bytes")
            position += await _blocking(os.pwrite, descriptor, chunk, position)
    finally:
        os.close(descriptor)
        # Chunks of one upload finish one at a time on the event loop: no lock needed.
        state = _upload_state(path)
        state["Received"] = add_range(_received(state), offset, position)
        _save_upload_state(path, state)
    return web.json_response(_upload_progress(size, _received(state)))


async def commit_upload(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    spool: Spool = request.app[SPOOL]
    path = spool.existing("uploads", request.match_info["id"])
    expected = _upload_state(path)
    if missing_ranges(_received(expected), int(expected["Size"])):
        progress = _upload_progress(int(expected["Size"]), _received(expected))
        return _error(409, "upload-incomplete", f"still missing {progress['Missing'][:4]}")
    try:
        with open(path, "rb") as handle:
            _, digest = await _blocking(size_and_sha256, handle)
            if digest != str(expected["SHA256"]).lower():
                return _error(400, "checksum-mismatch", "the ZIP does not match its SHA-256")
        summary = await _blocking(_node(request).merge_study, path, request["peer"])
    finally:
        spool.drop(path)
    return web.json_response(
        {
            "StudyInstanceUID": summary.study_uid,
            "Added": summary.added,
            "AlreadyStored": summary.already_stored,
            "Conflicts": summary.conflicts,
        }
    )


def create_peer_app(
    node: NodeForPeers,
    node_id: str,
    peers: dict[str, PeerGrant],
    spool: Path,
) -> web.Application:
    """``peers`` maps each pinned peer's name to what it may do; the caller may change
    it while the app runs."""
    app = web.Application(middlewares=[pinned_peers_only], client_max_size=1024**4)
    app[NODE] = node
    app[NODE_ID] = node_id
    app[PEERS] = peers
    app[SPOOL] = Spool(spool)
    app.router.add_get("/peer/v1/hello", hello)
    app.router.add_get("/peer/v1/changes", changes)
    app.router.add_get("/peer/v1/studies/{study}/inventory", inventory)
    app.router.add_post("/peer/v1/studies/{study}/export", export)
    app.router.add_get("/peer/v1/studies/{study}/annotations", get_annotations)
    app.router.add_post("/peer/v1/studies/{study}/annotations", put_annotations)
    app.router.add_get("/peer/v1/deletions", get_deletions)
    app.router.add_post("/peer/v1/deletions", post_deletions)
    app.router.add_get("/peer/v1/exports/{id}", fetch_export)
    app.router.add_delete("/peer/v1/exports/{id}", drop_export)
    app.router.add_post("/peer/v1/uploads", start_upload)
    app.router.add_get("/peer/v1/uploads/{id}", upload_offset)
    app.router.add_patch("/peer/v1/uploads/{id}", write_upload_chunk)
    app.router.add_post("/peer/v1/uploads/{id}/commit", commit_upload)
    return app
