"""``/viewer/``: the installed OHIF Viewer's files, as a single-page app.

A path that is a file answers it; any other path answers ``index.html`` (OHIF's router
reads the address: ``/viewer/viewer?StudyInstanceUIDs=...``), except one that names a missing
asset (``.js``, ``.wasm``…), which is a 404 rather than HTML where a script was expected.
Webpack's content-hashed files are cached for a year; everything else is revalidated
(ETag / Last-Modified), so a reinstall shows at the next load. Authentication is the REST
API's: its middleware covers every route.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from pacsnode.node.rest.context import CONFIG
from pacsnode.node.viewer import BASE_PATH, ViewerNotInstalled, viewer_dir

#: types by suffix, not left to the platform's mime.types: a .wasm answered as
#: application/octet-stream cannot be compiled while streaming, a .js as text/plain not run
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".onnx": "application/octet-stream",
}
#: webpack's [contenthash] (16 hex digits in OHIF 3.13, 20 before) as a dotted part of the
#: name: ``app.bundle.0f6159c501addfe9.js``, ``0ddf166f7a343eda.wasm``
_HASHED = re.compile(r"(^|\.)[0-9a-f]{16,32}\.[a-z0-9]+$")
_IMMUTABLE = "max-age=31536000, immutable"
_REVALIDATE = "no-cache"


def _root(request: web.Request) -> Path:
    root = viewer_dir(request.app[CONFIG])
    if not (root / "index.html").is_file():
        raise ViewerNotInstalled(
            "the viewer is not installed: run `pacsnode viewer install` (it fetches the OHIF "
            "Viewer from the npm registry), then reload this page"
        )
    return root.resolve()


def _file(root: Path, tail: str) -> Path | None:
    """The file ``tail`` names inside ``root``, or ``None``; never a path outside it."""
    if not tail:
        return None
    path = (root / tail).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _answer(path: Path) -> web.FileResponse:
    content_type = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    cache = _IMMUTABLE if _HASHED.search(path.name) else _REVALIDATE
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": cache})


async def viewer_file(request: web.Request) -> web.StreamResponse:
    root = _root(request)
    tail = request.match_info["tail"]
    path = _file(root, tail)
    if path is not None:
        return _answer(path)
    if Path(tail).suffix.lower() in _TYPES:
        raise web.HTTPNotFound(reason=f"no file {BASE_PATH}{tail} in the installed viewer")
    return _answer(root / "index.html")


async def viewer_without_slash(request: web.Request) -> web.StreamResponse:
    # OHIF's relative asset paths and router need the trailing slash.
    raise web.HTTPFound(BASE_PATH)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(BASE_PATH.rstrip("/"), viewer_without_slash)
    app.router.add_get(BASE_PATH + "{tail:.*}", viewer_file)
