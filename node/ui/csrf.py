"""Cross-site request forgery checks for the UI's POSTs.

A random token per browser session lives in an HttpOnly, SameSite=Strict cookie and is
repeated in each form (or in the ``X-CSRF-Token`` header of a script's request); a POST
is accepted when the two match and, when the browser names an Origin (or a Referer), it
is this node. Another site can make a browser send the cookie (not with SameSite=Strict,
but older browsers) but cannot read it to put it in the form.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "pacsnode_csrf"
FIELD = "csrf"
HEADER = "X-CSRF-Token"


class CsrfRefused(Exception):
    """The POST did not come from one of this node's pages."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(cookie: str | None, sent: str | None) -> bool:
    return bool(cookie) and bool(sent) and hmac.compare_digest(str(cookie), str(sent))


def same_origin(origin: str | None, host: str) -> bool:
    """Whether an Origin or Referer header names ``host`` (``None``: not sent, accepted:
    the token decides). ``null`` (a sandboxed or privacy-stripped origin) is refused."""
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def token_of(request: web.Request) -> tuple[str, bool]:
    """The session's token, and whether it is new (the answer must then set the cookie)."""
    current = request.cookies.get(COOKIE)
    return (current, False) if current else (new_token(), True)


def set_cookie(response: web.StreamResponse, token: str, secure: bool) -> None:
    response.set_cookie(COOKIE, token, path="/ui/", httponly=True, samesite="Strict", secure=secure)


def check(request: web.Request, sent: str | None) -> None:
    """Raise :class:`CsrfRefused` unless the POST carries the session's token and, when
    the browser says where it comes from, comes from this node."""
    host = request.host
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not same_origin(origin, host):
        raise CsrfRefused(f"this request came from another site ({origin})")
    if not tokens_match(request.cookies.get(COOKIE), sent or request.headers.get(HEADER)):
        raise CsrfRefused("this form has expired or did not come from this node: reload the page")
