"""CORS for the DICOMweb service, so a viewer served from another origin can use it.

Off unless ``[dicomweb] cors_origins`` lists origins. A preflight is answered before
authentication (browsers send it without credentials); the headers of every other answer
are added as it is prepared, which also covers streamed answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pacsnode.node.settings import DicomWebSettings

_METHODS = "GET, POST, OPTIONS"
_EXPOSED = "Content-Type, Content-Length, Content-Encoding, Content-Location, Warning"
_PREFLIGHT_CACHE_S = "600"


def _allowed_origin(settings: DicomWebSettings, request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin or not request.path.startswith(settings.root + "/"):
        return None
    if "*" in settings.cors_origins or origin.rstrip("/") in settings.cors_origins:
        return origin
    return None


def preflight(settings: DicomWebSettings) -> Middleware:
    @web.middleware
    async def answer_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in (
            request.headers
        )
        if is_preflight and _allowed_origin(settings, request) is not None:
            headers = {
                "Access-Control-Allow-Methods": _METHODS,
                "Access-Control-Allow-Headers": request.headers.get(
                    "Access-Control-Request-Headers", "Authorization, Accept, Content-Type"
                ),
                "Access-Control-Max-Age": _PREFLIGHT_CACHE_S,
            }
            return web.Response(status=204, headers=headers)
        return await handler(request)

    return answer_preflight


def add_headers(
    settings: DicomWebSettings,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        origin = _allowed_origin(settings, request)
        if origin is None:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")

    return on_prepare
