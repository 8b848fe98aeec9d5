"""The aiohttp application: app factory, shared state, error and auth middlewares."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from pacsnode.node.auth import verify_password
from pacsnode.node.config import NodeConfig
from pacsnode.node.core import NodeCore
from pacsnode.node.errors import DomainError
from pacsnode.node.jobs import JobRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

CORE = web.AppKey("core", NodeCore)
CONFIG = web.AppKey("config", NodeConfig)
JOBS = web.AppKey("jobs", JobRegistry)
MODALITIES = web.AppKey("modalities", dict)
# The Replicator, or None when no peer is configured (peering code stays unloaded).
REPLICATOR = web.AppKey("replicator", dict)  # {"instance": the Replicator or None}
_VERIFIED = web.AppKey("verified_credentials", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def core_of(request: web.Request) -> NodeCore:
    return request.app[CORE]


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run disk and index work off the event loop."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


def error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {
            "HttpStatus": status,
            "HttpError": web.Response(status=status).reason,
            "ErrorCode": code,
            "Message": message,
            "Method": request.method,
            "Uri": request.path,
        },
        status=status,
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(request, exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, exc.status, "http-error", exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(
            request, 500, "internal-error", "internal error; the node's log has the details"
        )


@web.middleware
async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    users = {user.name: user.password_hash for user in request.app[CONFIG].users}
    if not users:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    # Verifying scrypt costs tens of milliseconds: remember headers already verified.
    key = hashlib.sha256(header.encode()).hexdigest()
    verified: dict[str, bool] = request.app[_VERIFIED]
    if key not in verified:
        verified[key] = _check_basic(header, users)
        if len(verified) > 1024:
            verified.pop(next(iter(verified)))
    if not verified[key]:
        response = error_response(request, 401, "unauthorized", "credentials required")
        response.headers["WWW-Authenticate"] = 'Basic realm="pacsnode"'
        return response
    return await handler(request)


def _check_basic(header: str, users: dict[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        name, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    stored = users.get(name)
    return stored is not None and verify_password(password, stored)


def create_app(
    core: NodeCore,
    config: NodeConfig,
    jobs: JobRegistry | None = None,
    replicator: object | None = None,
) -> web.Application:
    from pacsnode.node.rest import annotations, modalities, peers, resources, system, tools, upload

    app = web.Application(middlewares=[errors_as_json, basic_auth], client_max_size=1024**4)
    app[CORE] = core
    app[CONFIG] = config
    app[_VERIFIED] = {}
    app[JOBS] = jobs or JobRegistry()
    app[REPLICATOR] = {"instance": replicator}
    app[MODALITIES] = {modality.name: modality for modality in config.modalities}
    for module in (resources, upload, annotations, tools, system, modalities, peers):
        module.setup_routes(app)
    return app
