"""The peering listener: protocol v1 over mutual TLS, answered from ``NodeForPeers``.

Every request needs a pinned client certificate; pull and push are permissions per peer.
A peer with a ``filter`` sees only matching studies: the others answer exactly as a
study this node does not hold. Exports and uploads belong to the peer that made them.
Errors answer a code and a message that name no file and no Python internals; the
details go to the log.

- ``GET  /peer/v1/hello``: node id, protocol version, capabilities
- ``GET  /peer/v1/changes?since=N&limit=M[&query=JSON]``: studies changed after cursor N,
  optionally only those matching a ``/tools/find``-style query (pull)
- ``GET  /peer/v1/studies/{S}/inventory``: SOP Instance UID -> digest (pull)
- ``POST /peer/v1/studies/{S}/inventory`` ``{"Instances": [...]}``: the same, only about
  the SOP Instance UIDs named (what a push needs: which of its instances we hold)
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
- ``DELETE /peer/v1/uploads/{id}``: abandons an upload (push)
- ``POST /peer/v1/uploads/{id}/commit``: once nothing is missing, checks the SHA-256,
  validates and merges the ZIP whole; answers what was added, already stored, or in
  conflict (push)
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from pacsnode.peer.annotation_doc import annotations_problem
from pacsnode.peer.digest import size_and_sha256
from pacsnode.peer.errors import UntrustedPeer
from pacsnode.peer.grants import PeerGrant, feed_queries
from pacsnode.peer.interface import NodeForPeers, StudyChange
from pacsnode.peer.ranges import Range, add_range, contiguous_prefix, missing_ranges
from pacsnode.peer.spool import Refusal, Spool, TransferLimits, upload_refusal
from pacsnode.peer.tls import check_pinned, peer_fingerprint

log = logging.getLogger(__name__)
#: the node's audit log (pacsnode.node.audit writes it; peer does not import the node)
_audit_log = logging.getLogger("pacsnode.audit")
T = TypeVar("T")
PROTOCOL_VERSION = 1
CAPABILITIES = [
    "inventory",
    "named-inventory",
    "partial-export",
    "sha256",
    "resumable",
    "parallel-upload",
]

NODE = web.AppKey("node", object)
NODE_ID = web.AppKey("node_id", str)
# peer name -> what it may do; shared with the node, so a peer added or removed applies at once
PEERS = web.AppKey("peers", dict[str, PeerGrant])
SPOOL = web.AppKey("spool", Spool)
LIMITS = web.AppKey("limits", TransferLimits)
# Admitting an upload reads the spool's total and then adds to it: one at a time.
ADMISSION = web.AppKey("admission", threading.Lock)
_CHUNK = 1 << 20
# JSON bodies (annotations with their attachments, instance lists); upload chunks are
# streamed and bounded by the upload's declared size instead.
_MAX_JSON_BODY = 256 << 20
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# An absolute path in a message (a file name in a storage error): never shown to a peer.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])/[^\s'\"]+")
# ... and a spool file's own name (a storage error names the file it read).
_FILE_NAME = re.compile(r"[\w.-]+\.(?:zip|json|part|tmp)\b")
# ... and a Python exception's class name that a storage message quotes ("BadZipFile: ").
_PYTHON_TYPE = re.compile(
    r"\b(?:(?:[a-z_]+\.)*[A-Z]\w*(?:Error|Exception|ZipFile)|(?:[a-z_]+\.)+error)\b: "
)
_INTERNAL = "the node could not do this; its log has the details"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"HttpStatus": status, "ErrorCode": code, "Message": message}, status=status
    )


def _refused(refusal: Refusal) -> web.Response:
    return _error(refusal.status, refusal.code, refusal.message)


def _absent_study() -> web.Response:
    """What an export of a study we do not hold (or the peer may not see) answers."""
    return _error(404, "unknown-study", "no such study")


def public_error(exc: BaseException) -> tuple[int, str, str]:
    """The status, code and message a peer is told about ``exc``.

    Only a node's domain errors below 500 (a bad ZIP, a bad request) keep their own
    message, with any absolute path taken out; anything else is an internal error
    whose text (a Python exception, a file name) stays in our log.
    """
    status = getattr(exc, "http_status", None)
    if status == 507 or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        # Our disk is full (merging their ZIP, writing their chunk): nothing was stored, and
        # the sender retries later (507 is transient to it), as for a refused upload.
        return 507, "insufficient-storage", "not enough free disk space"
    if not isinstance(status, int) or not 400 <= status < 500:
        return 500, "internal-error", _INTERNAL
    message = _ABSOLUTE_PATH.sub("<path>", str(getattr(exc, "message", exc)))
    message = _FILE_NAME.sub("the file", message)
    message = _PYTHON_TYPE.sub("", message)
    return status, str(getattr(exc, "code", "bad-request")), message[:500]


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(functools.partial(fn, *args))


@web.middleware
async def pinned_peers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    pins = {name: grant.fingerprint for name, grant in request.app[PEERS].items()}
    try:
        request["peer"] = check_pinned(peer_fingerprint(ssl_object), pins)
    except UntrustedPeer as exc:
        _audit(request, "", 403)
        return _error(403, "untrusted-peer", str(exc))
    answer = await _answered(request, handler)
    _audit(request, request["peer"], answer.status)
    return answer


def _audit(request: web.Request, peer: str, status: int) -> None:
    """Each peer request to the node's audit log, by the logger's name: ``peer`` never
    imports the node (its writer adds the time, and drops these when not started)."""
    _audit_log.info(
        {
            "action": "peer-request",
            "peer": peer,
            "address": request.remote or "",
            "outcome": str(status),
            "method": request.method,
            "path": request.path[:512],
        }
    )


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Our own refusals (their reasons are ours) and aiohttp's (405, 413), as JSON.
        return _error(exc.status, "refused", exc.reason)
    except Exception as exc:  # a domain error from the node, a bad ZIP, or a bug
        status, code, message = public_error(exc)
        if status >= 500 and status != 507:
            log.exception("peer %s: %s %s failed", request["peer"], request.method, request.path)
        else:
            log.warning(
                "peer %s: %s %s refused: %s", request["peer"], request.method, request.path, exc
            )
        return _error(status, code, message)


def _grant(request: web.Request) -> PeerGrant:
    grant = request.app[PEERS].get(request["peer"])
    if grant is None:  # removed while this request was under way
        raise web.HTTPForbidden(reason="this peer is no longer configured")
    return grant


def _allowed(request: web.Request, *, push: bool = False, pull: bool = False) -> None:
    if not _grant(request).permits(push=push, pull=pull):
        raise web.HTTPForbidden(reason="this peer may not do that")


def _node(request: web.Request) -> NodeForPeers:
    return request.app[NODE]  # type: ignore[return-value]


async def _in_grant(request: web.Request, study_uid: str) -> bool:
    """Whether the peer may see the study: always without a filter, else if it matches.

    A study we do not hold never matches, so outside the grant and absent look alike.
    """
    query = _grant(request).query
    if not query:
        return True
    return await _blocking(_node(request).study_matches, study_uid, query)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="the body is not JSON") from None


async def hello(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "NodeId": request.app[NODE_ID],
            "Protocol": PROTOCOL_VERSION,
            "Capabilities": CAPABILITIES,
            "YouAre": request["peer"],
        }
    )


def _matching_all(
    node: NodeForPeers, changes: list[StudyChange], queries: list[dict[str, str]]
) -> list[StudyChange]:
    return [c for c in changes if all(node.study_matches(c.study_uid, q) for q in queries)]


async def changes(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    try:
        since = int(request.query.get("since", "0"))
        limit = max(1, min(int(request.query.get("limit", "500")), 5000))
        query = json.loads(request.query.get("query", "null"))
    except ValueError:
        return _error(400, "bad-request", "since and limit are integers, query is JSON")
    if query is not None and (
        not isinstance(query, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in query.items())
    ):
        return _error(400, "bad-request", "query must be a JSON object of keywords to values")
    queries = feed_queries(_grant(request).query, query)
    node = _node(request)
    batch = await _blocking(node.study_changes, since, limit, queries[0] if queries else None)
    found = batch.changes
    if len(queries) > 1:
        found = await _blocking(_matching_all, node, found, queries[1:])
    return web.json_response(
        {
            "Changes": [{"Seq": c.seq, "StudyInstanceUID": c.study_uid} for c in found],
            "Last": batch.last,
            "Done": batch.done,
        }
    )


async def inventory(request: web.Request) -> web.Response:
    """The whole inventory: only for a peer that may pull the study."""
    _allowed(request, pull=True)
    study = request.match_info["study"]
    if not await _in_grant(request, study):
        return web.json_response({"Instances": {}})
    found = await _blocking(_node(request).inventory, study)
    return web.json_response({"Instances": found})


async def named_inventory(request: web.Request) -> web.Response:
    """Which of the SOP Instance UIDs the peer names we hold, with their digests.

    All a push needs (which of its instances to send), and all a push-only peer gets:
    it learns nothing of instances it does not already hold, so it cannot list our
    studies. Answering about the UIDs it names, rather than about what it pushed
    itself, keeps push efficient: an instance we got elsewhere is not sent again.
    """
    _allowed(request)
    body = await _json_body(request)
    named = body.get("Instances") if isinstance(body, dict) else None
    if not isinstance(named, list) or not all(isinstance(uid, str) for uid in named):
        return _error(400, "bad-request", 'send {"Instances": [SOP Instance UIDs]}')
    study = request.match_info["study"]
    if not named or not await _in_grant(request, study):
        return web.json_response({"Instances": {}})
    found = await _blocking(_node(request).inventory, study)
    return web.json_response({"Instances": {uid: found[uid] for uid in named if uid in found}})


async def get_annotations(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    study = request.match_info["study"]
    if not await _in_grant(request, study):
        return web.json_response({"Resources": {}})  # what a study we lack answers
    return web.json_response(await _blocking(_node(request).annotations, study))


async def put_annotations(request: web.Request) -> web.Response:
    """Add the annotations we lack, only of the study in the URL and its patient."""
    _allowed(request, push=True)
    document = await _json_body(request)
    problem = annotations_problem(document)
    if problem:
        return _error(400, "bad-annotations", problem)
    study = request.match_info["study"]
    if not await _in_grant(request, study):
        return web.json_response({"Added": 0})  # what a study we lack answers
    added = await _blocking(_node(request).apply_annotations, document, study)
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
    if not _grant(request).mirror_deletions:
        raise web.HTTPForbidden(reason="deletions are not mirrored with this peer")
    body = await _json_body(request)
    ids = body.get("IDs") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return _error(400, "bad-request", 'send {"IDs": [resource ids]}')
    query = _grant(request).query
    if query:
        ids = await _blocking(_within, _node(request), ids, query)
    deleted = await _blocking(_node(request).mirror_deletions, ids, request["peer"])
    return web.json_response({"Deleted": deleted})


def _within(node: NodeForPeers, resource_ids: list[str], query: dict[str, str]) -> list[str]:
    """The resources whose every study matches the grant: a filtered peer cannot
    delete a study it may not see, nor a patient who also has such a study."""

    def inside(resource_id: str) -> bool:
        studies = node.studies_of(resource_id)
        return bool(studies) and all(node.study_matches(uid, query) for uid in studies)

    return [resource_id for resource_id in resource_ids if inside(resource_id)]


async def export(request: web.Request) -> web.Response:
    """Prepare the study (or the listed instances) as a ZIP to fetch with Range requests."""
    _allowed(request, pull=True)
    body = await _json_body(request) if request.can_read_body else {}
    wanted = body.get("instances") if isinstance(body, dict) else None
    chosen = set(map(str, wanted)) if isinstance(wanted, list) else None
    study = request.match_info["study"]
    if not await _in_grant(request, study):
        return _absent_study()
    spool: Spool = request.app[SPOOL]
    if await _blocking(spool.count, "exports", request["peer"]) >= request.app[LIMITS].per_peer:
        limit = request.app[LIMITS].per_peer
        return _error(429, "too-many-exports", f"at most {limit} exports ready per peer")
    export_id, path = spool.new("exports", request["peer"], {"Study": study})
    try:
        with spool.busy(path), open(path, "wb") as handle:
            await _blocking(_node(request).write_study, study, chosen, handle)
        with open(path, "rb") as handle:
            size, digest = await _blocking(size_and_sha256, handle)
    except Exception as exc:
        spool.drop(path)  # a failed export leaves nothing behind
        if getattr(exc, "http_status", None) == 404:
            return _absent_study()
        raise
    return web.json_response({"Export": export_id, "Size": size, "SHA256": digest})


async def fetch_export(request: web.Request) -> web.StreamResponse:
    """The prepared ZIP; ``Range: bytes=N-`` resumes a cut-off download."""
    _allowed(request, pull=True)
    spool: Spool = request.app[SPOOL]
    path = spool.existing("exports", request.match_info["id"], request["peer"])
    # The grant is checked again: a filter changed since the export applies at once.
    if not await _in_grant(request, str(spool.state(path).get("Study", ""))):
        raise web.HTTPNotFound(reason="no such export")
    spool.touch(path)
    return web.FileResponse(path, headers={"Content-Type": "application/zip"})


async def drop_export(request: web.Request) -> web.Response:
    _allowed(request, pull=True)
    spool: Spool = request.app[SPOOL]
    spool.drop(spool.existing("exports", request.match_info["id"], request["peer"]))
    return web.json_response({})


def _admit_upload(
    spool: Spool,
    admission: threading.Lock,
    limits: TransferLimits,
    room: int | None,
    peer: str,
    state: dict[str, Any],
) -> tuple[str, Path] | Refusal:
    with admission:
        refusal = upload_refusal(
            int(state["Size"]),
            limits,
            spool.count("uploads", peer),
            spool.reserved_bytes(),
            room,
            shutil.disk_usage(spool.root).free,
        )
        return refusal or spool.new("uploads", peer, state)


async def start_upload(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    body = await _json_body(request)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("Study"), str)
        or not isinstance(body.get("SHA256"), str)
        or not _SHA256.fullmatch(body["SHA256"])
        or not isinstance(body.get("Size"), int)
        or isinstance(body["Size"], bool)
        or body["Size"] < 0
    ):
        return _error(400, "bad-request", 'send {"Study", "Size", "SHA256"}')
    node, spool = _node(request), request.app[SPOOL]
    spool.root.mkdir(parents=True, exist_ok=True)
    state = {"Study": body["Study"], "Size": body["Size"], "SHA256": body["SHA256"]}
    admitted = await _blocking(
        _admit_upload,
        spool,
        request.app[ADMISSION],
        request.app[LIMITS],
        await _blocking(node.storage_room),
        request["peer"],
        {**state, "Received": []},
    )
    if isinstance(admitted, Refusal):
        log.warning(
            "peer %s: upload of %d bytes refused: %s",
            request["peer"],
            body["Size"],
            admitted.message,
        )
        return _refused(admitted)
    upload_id, _ = admitted
    return web.json_response(_upload_progress(body["Size"], []) | {"Upload": upload_id})


def _received(state: dict[str, Any]) -> list[Range]:
    return [(int(low), int(high)) for low, high in state["Received"]]


def _upload_progress(size: int, received: list[Range]) -> dict[str, Any]:
    return {
        "Offset": contiguous_prefix(received),
        "Missing": [list(gap) for gap in missing_ranges(received, size)],
    }


def _upload(request: web.Request) -> Path:
    return request.app[SPOOL].existing("uploads", request.match_info["id"], request["peer"])


async def upload_offset(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    state = Spool.state(_upload(request))
    return web.json_response(_upload_progress(int(state["Size"]), _received(state)))


async def drop_upload(request: web.Request) -> web.Response:
    """A sender giving up frees its place at once, instead of when the sweep runs."""
    _allowed(request, push=True)
    request.app[SPOOL].drop(_upload(request))
    return web.json_response({})


async def write_upload_chunk(request: web.Request) -> web.Response:
    """Write a chunk at ``Upload-Offset``; a chunk cut off keeps what arrived, and the
    client asks what is missing and sends that again."""
    _allowed(request, push=True)
    path = _upload(request)
    size = int(Spool.state(path)["Size"])
    try:
        offset = int(request.headers.get("Upload-Offset", "-1"))
    except ValueError:
        offset = -1
    if not 0 <= offset <= size:
        return _error(409, "bad-offset", f"Upload-Offset must be within 0..{size}")
    length = request.content_length
    if length is not None and offset + length > size:
        # Refused before reading: nothing beyond the declared size is ever written.
        return _error(400, "too-long", f"the upload is {size} bytes")
    with request.app[SPOOL].busy(path):
        return await _write_chunk(request, path, offset, size)


async def _write_chunk(request: web.Request, path: Path, offset: int, size: int) -> web.Response:
    position = offset
    descriptor = os.open(path, os.O_WRONLY)
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            if position + len(chunk) > size:
                return _error(400, "too-long", f"the upload is {size} bytes")
            position += await _blocking(os.pwrite, descriptor, chunk, position)
    except ConnectionError:
        # The link dropped mid-chunk: expected on a long transfer, and what arrived is
        # kept (below) for the sender to resume after. Nobody is left to answer.
        log.info("peer %s: upload chunk cut off after %d bytes", request["peer"], position - offset)
        return _error(400, "cut-off", "the chunk was cut off")
    finally:
        os.close(descriptor)
        # Chunks of one upload finish one at a time on the event loop: no lock needed.
        state = Spool.state(path)
        state["Received"] = add_range(_received(state), offset, position)
        Spool.save_state(path, state)
    return web.json_response(_upload_progress(size, _received(state)))


async def commit_upload(request: web.Request) -> web.Response:
    _allowed(request, push=True)
    spool: Spool = request.app[SPOOL]
    path = _upload(request)
    expected = spool.state(path)
    if missing_ranges(_received(expected), int(expected["Size"])):
        progress = _upload_progress(int(expected["Size"]), _received(expected))
        return _error(409, "upload-incomplete", f"still missing {progress['Missing'][:4]}")
    try:
        with spool.busy(path):
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


async def _sweep_spool(app: web.Application) -> AsyncIterator[None]:
    """Remove abandoned transfers now and then (and leftovers of a previous run)."""
    limits, spool = app[LIMITS], app[SPOOL]

    async def sweep_forever() -> None:
        while True:
            try:
                await _blocking(spool.sweep, limits.idle_s)
            except OSError:
                log.exception("peer spool: sweeping failed")
            await asyncio.sleep(limits.sweep_every_s)

    task = asyncio.create_task(sweep_forever())
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def create_peer_app(
    node: NodeForPeers,
    node_id: str,
    peers: dict[str, PeerGrant],
    spool: Path,
) -> web.Application:
    """``peers`` maps each pinned peer's name to what it may do; the caller may change
    it while the app runs."""
    app = web.Application(middlewares=[pinned_peers_only], client_max_size=_MAX_JSON_BODY)
    app[NODE] = node
    app[NODE_ID] = node_id
    app[PEERS] = peers
    app[SPOOL] = Spool(spool)
    app[LIMITS] = node.transfer_limits()
    app[ADMISSION] = threading.Lock()
    app.cleanup_ctx.append(_sweep_spool)
    app.router.add_get("/peer/v1/hello", hello)
    app.router.add_get("/peer/v1/changes", changes)
    app.router.add_get("/peer/v1/studies/{study}/inventory", inventory)
    app.router.add_post("/peer/v1/studies/{study}/inventory", named_inventory)
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
    app.router.add_delete("/peer/v1/uploads/{id}", drop_upload)
    app.router.add_post("/peer/v1/uploads/{id}/commit", commit_upload)
    return app
