"""A small ``@ohif/app`` tarball laid out as OHIF's production build names ``/``: the test
registry (``file://``) and the route tests serve it instead of fetching 48 MiB."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

INDEX_HTML = (
    '<!doctype html><html><head><script>window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json">'
    '<meta name="msapplication-config" content="/assets/browserconfig.xml">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<script src="//cdn.example/keep.js"></script>'
    '<script defer src="/app.bundle.0f6159c501addfe9.js"></script>'
    '<link href="/app.bundle.css" rel="stylesheet"></head><body><div id="root"></div></body></html>'
)
DIST = {
    "index.html": INDEX_HTML,
    "app-config.js": "window.config = {routerBasename: null};\n",
    "app.bundle.0f6159c501addfe9.js": '(() => { __webpack_require__.p = "/"; })();\n',
    "compute.bundle.0fc3a3ee85296cf2.js": '(() => { __webpack_require__.p = "/"; })();\n',
    "app.bundle.css": "@font-face{src:url(/a34f9d1faa5f3315.woff2)}\n",
    "a34f9d1faa5f3315.woff2": "font",
    "0ddf166f7a343eda.wasm": "\0asm",
    "manifest.json": '{"icons": [{"src": "/assets/icon.png"}], "start_url": "/"}\n',
    "assets/icon.png": "png",
}


def ohif_tarball(dist: dict[str, str] = DIST, extra: dict[str, str] | None = None) -> bytes:
    """An npm tarball: everything under ``package/``, the build in ``package/dist/``."""
    files = {f"package/dist/{name}": text for name, text in dist.items()}
    files |= {"package/package.json": '{"name": "@ohif/app"}', **(extra or {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def file_registry(root: Path, version: str, tarball: bytes, integrity: str | None = None) -> str:
    """A registry on disk, read through ``file://`` URLs as urllib reads npm's over HTTPS:
    the version record at ``{root}/@ohif/app/{version}`` and the tarball beside it."""
    package = root / "@ohif" / "app"
    package.mkdir(parents=True, exist_ok=True)
    (package / f"app-{version}.tgz").write_bytes(tarball)
    if integrity is None:
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    record = {
        "name": "@ohif/app",
        "version": version,
        "dist": {"tarball": (package / f"app-{version}.tgz").as_uri(), "integrity": integrity},
    }
    (package / version).write_text(json.dumps(record))
    return root.as_uri()
