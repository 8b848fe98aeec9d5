"""HTTP Basic authentication and roles of every REST call, when the configuration has users.

scrypt costs tens of milliseconds of CPU by design, so it never runs on the event loop: a
small thread pool verifies, and past ``_MAX_PENDING`` waiting checks the node answers 503
at once. A verified ``Authorization`` header is remembered for ``_REMEMBER_S`` (so a client
sending it on every call costs one scrypt a minute). After ``Backoff.free_failures``
failed logins an address waits, doubling each time, and is answered 429 with
Retry-After without any scrypt spent. One address has at most ``_PER_ADDRESS`` checks
under way; the others wait their turn and then look again at the remembered headers and
the backoff (parallel guesses would otherwise all start before the first failure counts,
and a browser's parallel first requests would all pay scrypt). An already-verified header
still passes during a backoff (a user behind the same NAT as an attacker keeps working).
Unknown users cost the same scrypt as known ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pacsnode.node import audit
from pacsnode.node.auth import check_user, decoy_hash
from pacsnode.node.rest.context import CONFIG, USER
from pacsnode.node.rest.errors import error_response
from pacsnode.node.rest.roles import required_role, strictest
from pacsnode.node.settings import User

log = logging.getLogger(__name__)

_REMEMBER_S = 60.0
_REMEMBERED = 1024
_SCRYPT_THREADS = 2
_MAX_PENDING = 64
_PER_ADDRESS = 2  # checks under way from one address; parallel guesses wait their turn
_WAITING_PER_ADDRESS = 32  # beyond, an address is answered 429 at once
_OVERRIDE = "X-HTTP-Method-Override"


@dataclass
class Backoff:
    """Failed logins per source address, and how long each must wait (clock passed in)."""

    free_failures: int = 5
    base_s: float = 1.0
    max_s: float = 60.0
    forget_s: float = 900.0
    capacity: int = 10000
    _state: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait before its credentials are checked again."""
        count, until = self._state.get(address, (0, 0.0))
        if count and now - until > self.forget_s:
            self._state.pop(address, None)
            return 0.0
        return max(0.0, until - now)

    def failed(self, address: str, now: float) -> None:
        count, _ = self._state.pop(address, (0, 0.0))
        count += 1
        extra = count - self.free_failures
        wait = 0.0 if extra <= 0 else min(self.max_s, self.base_s * 2 ** (extra - 1))
        self._state[address] = (count, now + wait)
        while len(self._state) > self.capacity:  # the oldest entries go first
            self._state.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._state.pop(address, None)


@dataclass
class VerifiedCache:
    """``Authorization`` headers verified lately (by their SHA-256, never in clear)."""

    ttl_s: float = _REMEMBER_S
    capacity: int = _REMEMBERED
    _entries: OrderedDict[str, tuple[User, float]] = field(default_factory=OrderedDict)

    def get(self, header: str, now: float) -> User | None:
        key = _key(header)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, header: str, user: User, now: float) -> None:
        self._entries[_key(header)] = (user, now + self.ttl_s)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


def _key(header: str) -> str:
    return hashlib.sha256(header.encode()).hexdigest()


def parse_basic(header: str) -> tuple[str, str] | None:
    """(name, password) of an HTTP Basic ``Authorization`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (name, password) if colon else None


def meant_methods(request: web.Request) -> list[str]:
    """The request's method and any method it may stand for by Orthanc's overrides; the
    role check takes the strictest, so an override never lowers what is needed."""
    methods = [request.method]
    if request.method == "POST" and _OVERRIDE in request.headers:
        methods.append(request.headers[_OVERRIDE].upper())
    if request.method in ("GET", "POST") and "_method" in request.query:
        methods.append(request.query["_method"].upper())
    return methods


class Authenticator:
    """Who a request's credentials belong to, verified off the event loop."""

    def __init__(self, users: tuple[User, ...]) -> None:
        self.users = {user.name: user for user in users}
        # Unknown names are checked against a hash of the same cost as a real one.
        self._decoy = decoy_hash(users[0].password_hash) if users else ""
        self._pool = ThreadPoolExecutor(_SCRYPT_THREADS, thread_name_prefix="pacsnode-scrypt")
        self._pending = 0
        self._turns: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self.cache = VerifiedCache()
        self.backoff = Backoff()

    def busy(self) -> bool:
        return self._pending >= _MAX_PENDING

    def crowded(self, address: str) -> bool:
        return self._turns.get(address, (None, 0))[1] >= _WAITING_PER_ADDRESS

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Wait until fewer than ``_PER_ADDRESS`` checks from ``address`` are under way."""
        semaphore, users = self._turns.get(address) or (asyncio.Semaphore(_PER_ADDRESS), 0)
        self._turns[address] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._turns[address]
            if users == 1:
                del self._turns[address]
            else:
                self._turns[address] = (semaphore, users - 1)

    async def verify(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        stored = user.password_hash if user else None
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._pool, check_user, password, stored, self._decoy)
        finally:
            self._pending -= 1
        return user if ok else None


def basic_auth(users: tuple[User, ...]) -> Middleware:
    """A middleware admitting requests with one of these users' credentials and role."""
    authenticator = Authenticator(users)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = await _authenticate(authenticator, request)
        if isinstance(user, web.Response):
            return user
        root = request.app[CONFIG].dicomweb.root
        needed = strictest([required_role(m, request.path, root) for m in meant_methods(request)])
        if not user.role.allows(needed):
            return error_response(
                request, 403, "forbidden", f"user '{user.name}' is {user.role}; this needs {needed}"
            )
        request[USER] = user.name
        return await handler(request)

    return middleware


async def _authenticate(auth: Authenticator, request: web.Request) -> User | web.Response:
    header = request.headers.get("Authorization", "")
    address = request.remote or ""
    known = _known_or_refused(auth, request, header, address)
    if known is not None:
        return known
    credentials = parse_basic(header)
    if credentials is None:
        return _unauthorized(request)
    if auth.busy() or auth.crowded(address):
        return _retry_later(request, 503, "busy", "too many logins at once; retry", 1.0)
    async with auth.turn(address):
        # Looked at again: while this one waited, the same header may have been verified,
        # or failures from this address may have started a backoff.
        known = _known_or_refused(auth, request, header, address)
        if known is not None:
            return known
        user = await auth.verify(*credentials)
    if user is None:
        auth.backoff.failed(address, time.monotonic())
        log.warning("REST login failed for user %r from %s", credentials[0][:64], address)
        audit.login_failed(credentials[0], address)
        return _unauthorized(request)
    auth.backoff.succeeded(address)
    auth.cache.put(header, user, time.monotonic())
    return user


def _known_or_refused(
    auth: Authenticator, request: web.Request, header: str, address: str
) -> User | web.Response | None:
    """A remembered user, a 429 while the address backs off, or None: verify."""
    now = time.monotonic()
    user = auth.cache.get(header, now) if header else None
    if user is not None:
        return user
    wait = auth.backoff.retry_after(address, now)
    if wait > 0:
        message = "too many failed logins; retry later"
        return _retry_later(request, 429, "too-many-failed-logins", message, wait)
    return None


def _retry_later(
    request: web.Request, status: int, code: str, message: str, wait: float
) -> web.Response:
    response = error_response(request, status, code, message)
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


def _unauthorized(request: web.Request) -> web.Response:
    response = error_response(request, 401, "unauthorized", "credentials required")
    response.headers["WWW-Authenticate"] = 'Basic realm="pacsnode"'
    return response
