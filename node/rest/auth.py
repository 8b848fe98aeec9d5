"""HTTP Basic authentication of every REST call, when the configuration has users."""

from __future__ import annotations

import base64
import hashlib

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pacsnode.node.auth import verify_password
from pacsnode.node.rest.errors import error_response
from pacsnode.node.settings import User

_REMEMBERED = 1024


def basic_auth(users: tuple[User, ...]) -> Middleware:
    """A middleware admitting requests with one of these users' credentials."""
    hashes = {user.name: user.password_hash for user in users}
    # Verifying scrypt costs tens of milliseconds: remember headers already verified.
    verified: dict[str, bool] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        key = hashlib.sha256(header.encode()).hexdigest()
        if key not in verified:
            verified[key] = _check_basic(header, hashes)
            if len(verified) > _REMEMBERED:
                verified.pop(next(iter(verified)))
        if not verified[key]:
            response = error_response(request, 401, "unauthorized", "credentials required")
            response.headers["WWW-Authenticate"] = 'Basic realm="pacsnode"'
            return response
        return await handler(request)

    return middleware


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
