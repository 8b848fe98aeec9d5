"""Rendering the UI's pages: the template environment (made on the first page, so an
idle node never imports Jinja2), the headers every page carries, flash messages, and
errors shown as pages.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from pacsnode.node.errors import DomainError
from pacsnode.node.rest.context import CONFIG
from pacsnode.node.ui import BASE_PATH, csrf, listing
from pacsnode.node.ui.panels import PANELS
from pacsnode.node.ui.views import ListingCache
from pacsnode.node.viewer import viewer_dir

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
_FLASH = "pacsnode_flash"
#: the pages' own scripts and styles only: nothing is loaded from anywhere else
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    # style attributes only (the viewer's zoom, the disk bar), never a style sheet
    "style-src-attr 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
PAGE_HEADERS = {
    # a page may show patients' data: nothing is kept that a logout should hide
    "Cache-Control": "no-store",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LazyTemplates:
    """What aiohttp-jinja2 reads from the app under its key: ``get_template`` and
    ``is_async``; the Jinja2 environment behind them is made on the first page."""

    def __init__(self) -> None:
        self._environment: Any = None
        self._lock = threading.Lock()

    is_async = False

    def get_template(self, name: str) -> Any:
        return self.environment().get_template(name)

    def environment(self) -> Any:
        with self._lock:
            if self._environment is None:
                self._environment = _make_environment()
            return self._environment


def _make_environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        person_name=listing.person_name,
        dicom_date=listing.dicom_date,
        dicom_datetime=listing.dicom_datetime,
        bytes=listing.byte_size,
    )
    environment.globals.update(static=static_url, base=BASE_PATH)
    return environment


UI_TEMPLATES: web.AppKey[LazyTemplates] = web.AppKey("ui_templates", LazyTemplates)
LISTINGS: web.AppKey[ListingCache] = web.AppKey("ui_listings", ListingCache)


@functools.cache
def static_url(name: str) -> str:
    """The asset's URL with a digest of its content: cached a long time, yet a new
    version of the file is a new URL."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"{BASE_PATH}static/{name}?v={digest}"


def viewer_installed(request: web.Request) -> bool:
    return (viewer_dir(request.app[CONFIG]) / "index.html").is_file()


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    import aiohttp_jinja2

    token, new = csrf.token_of(request)
    flash = unquote(request.cookies.get(_FLASH, ""))
    shown = {
        "csrf_field": csrf.FIELD,
        "csrf_token": token,
        "flash": flash,
        "path": request.path,
        "error": None,
        "panels": request.config_dict.get(PANELS, ()),  # web plugins' pages, in the nav
        **context,
    }
    response = aiohttp_jinja2.render_template(
        template, request, shown, app_key=UI_TEMPLATES, status=status
    )
    response.headers.update(PAGE_HEADERS)
    if new:
        csrf.set_cookie(response, token, request.secure)
    if flash:
        response.del_cookie(_FLASH, path=BASE_PATH)
    return response


def redirect(request: web.Request, location: str, message: str = "") -> web.Response:
    """Answer a POST with a redirect to a page (POST, then GET: a reload does not send
    the form again), carrying a one-time message for it."""
    response = web.Response(status=303, headers={"Location": location})
    if message:
        response.set_cookie(
            _FLASH, quote(message), path=BASE_PATH, httponly=True, samesite="Strict"
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", {"status": status, "message": message}, status)


def page(handler: Handler) -> Handler:
    """A UI handler whose errors are answered as a page saying what went wrong: never
    JSON, never a traceback (that goes to the node's log)."""

    @functools.wraps(handler)
    async def shown(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        response = await _answer_or_error_page(handler, request)
        # the server's share of a page's time, for the browser's tools and the speed check
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.1f}"
        return response

    return shown


async def _answer_or_error_page(handler: Handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except csrf.CsrfRefused as exc:
        return error_page(request, 403, str(exc))
    except DomainError as exc:
        return error_page(request, exc.http_status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_page(request, 500, "Something went wrong; the node's log has details.")
