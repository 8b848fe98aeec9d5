"""Paths as Orthanc reads them: ``//system`` is ``/system`` and ``/patients/`` is ``/patients``.

Orthanc splits a URI on ``/`` and drops empty parts; client libraries and Orthanc's
own test suite rely on it (base URLs ending in ``/``, paths with a trailing slash).
A request that matches no route is tried once more with its path so normalised,
in place (no redirect: a POST or DELETE must not turn into a GET). It also applies
Orthanc's method overrides (for clients that can only send GET and POST) the same way.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

_OVERRIDE = "X-HTTP-Method-Override"
_OVERRIDABLE = {"GET", "POST", "PUT", "DELETE"}


def normalized_path(path: str) -> str:
    return "/" + "/".join(part for part in path.split("/") if part)


def _method(request: web.Request) -> str:
    """The method meant: Orthanc honours ``X-HTTP-Method-Override`` on a POST and a
    ``_method`` query parameter (as Ruby clients send it) on a GET or a POST."""
    wanted = request.headers.get(_OVERRIDE, "") if request.method == "POST" else ""
    if request.method in ("GET", "POST"):
        wanted = request.query.get("_method", wanted)
    return wanted.upper() if wanted.upper() in _OVERRIDABLE else request.method


@web.middleware
async def orthanc_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost middleware: authentication and the error envelope have already run."""
    method = _method(request)
    path = normalized_path(request.path)
    if request.match_info.http_exception is None and method == request.method:
        return await handler(request)
    if path == request.path and method == request.method:
        return await handler(request)  # the 404 or 405 it is
    url = request.rel_url.with_path(path).with_query(request.rel_url.query)
    clone = request.clone(method=method, rel_url=url)
    match_info = await request.app.router.resolve(clone)
    if isinstance(match_info.http_exception, web.HTTPNotFound):
        return await handler(request)
    # A match, or a known path with another method: its handler answers (or says 405).
    match_info.add_app(request.app)
    match_info.freeze()
    clone._match_info = match_info
    return await match_info.handler(clone)
