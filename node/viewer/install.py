"""``pacsnode viewer install``: fetch OHIF's built viewer from the npm registry and prepare
it to be served under ``/viewer/`` against the node's own DICOMweb root.

The ``@ohif/app`` tarball carries a production build in ``dist/``. It is verified against the
integrity hash the registry publishes, only ``dist/`` is unpacked (with tarfile's ``data``
filter), and the build is rebased: OHIF is built for ``/`` (``PUBLIC_URL``, webpack's public
path, absolute asset links), and a rebuild needs Node.js, so the few places that name ``/`` are
rewritten to :data:`BASE_PATH` instead. The install is staged beside the target and swapped in,
so a failure leaves the previous viewer (or none) as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsnode.node.viewer import BASE_PATH, ViewerInstallError

PACKAGE = "@ohif/app"
#: the release pacsnode is tested with; the rebasing below knows its build's layout
DEFAULT_VERSION = "3.13.2"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
#: what was installed, written beside the viewer's files
MANIFEST = "pacsnode-viewer.json"
#: a sanity cap on the download (3.13.2 is 48 MiB)
_MAX_TARBALL = 512 * 1024 * 1024
_TIMEOUT_S = 60
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Release:
    version: str
    tarball: str
    #: hashlib name -> expected digest, from the registry's ``dist.integrity`` (or ``shasum``)
    algorithm: str
    digest: bytes


def _get(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": "pacsnode-viewer-install"})


def find_release(version: str, registry: str = DEFAULT_REGISTRY) -> Release:
    """The registry's record of one version (or dist-tag such as ``latest``)."""
    name = urllib.parse.quote(PACKAGE, safe="@")
    url = f"{registry.rstrip('/')}/{name}/{urllib.parse.quote(version, safe='')}"
    try:
        with urllib.request.urlopen(_get(url), timeout=_TIMEOUT_S) as answer:
            record = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise ViewerInstallError(f"{url}: the registry answered {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ViewerInstallError(f"{url}: {exc}") from exc
    dist = record.get("dist") or {}
    if not dist.get("tarball"):
        raise ViewerInstallError(f"{url}: no tarball in the registry's record")
    algorithm, digest = _expected_digest(dist, url)
    return Release(str(record.get("version", version)), dist["tarball"], algorithm, digest)


def _expected_digest(dist: dict[str, Any], url: str) -> tuple[str, bytes]:
    """The strongest hash the registry gives: an SRI ``integrity`` (sha512 for every package
    published since 2017), else the legacy sha1 ``shasum``."""
    entries = dict(
        entry.split("-", 1) for entry in str(dist.get("integrity", "")).split() if "-" in entry
    )
    for algorithm in ("sha512", "sha384", "sha256"):
        if algorithm in entries:
            return algorithm, base64.b64decode(entries[algorithm])
    if dist.get("shasum"):
        return "sha1", bytes.fromhex(dist["shasum"])
    raise ViewerInstallError(f"{url}: the registry gives no hash to verify the tarball with")


def download(release: Release, to: Path) -> Path:
    """The tarball, streamed to ``to`` and checked against the registry's hash."""
    digest = hashlib.new(release.algorithm)
    size = 0
    try:
        with urllib.request.urlopen(_get(release.tarball), timeout=_TIMEOUT_S) as answer:
            with open(to, "wb") as out:
                while chunk := answer.read(_CHUNK):
                    size += len(chunk)
                    if size > _MAX_TARBALL:
                        raise ViewerInstallError(f"{release.tarball}: larger than expected")
                    digest.update(chunk)
                    out.write(chunk)
    except OSError as exc:
        raise ViewerInstallError(f"{release.tarball}: {exc}") from exc
    if digest.digest() != release.digest:
        raise ViewerInstallError(
            f"{release.tarball}: {release.algorithm} does not match the registry's; not installed"
        )
    return to


def unpack_dist(tarball: Path, into: Path) -> int:
    """Extract the package's ``dist/`` (files and folders only) into ``into``; the count."""
    members = []
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                _, _, inside = member.name.partition("/")  # npm's top folder, "package"
                if not inside.startswith("dist/") or not (member.isfile() or member.isdir()):
                    continue
                members.append(member.replace(name=inside.removeprefix("dist/"), deep=False))
            archive.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ViewerInstallError(f"{tarball.name}: {exc}") from exc
    if not (into / "index.html").is_file():
        raise ViewerInstallError(f"{PACKAGE} has no built dist/index.html; try another --version")
    return sum(member.isfile() for member in members)


# OHIF's build names "/" in these places only (checked with 3.11.1, 3.12.10 and 3.13.2): the
# HTML's links and PUBLIC_URL, webpack's public path in each entry bundle, the stylesheet's
# font URLs and the web manifest's icons.
_HTML_LINK = re.compile(rb'((?:href|src|content)=")/(?!/)')
_HTML_PUBLIC_URL = re.compile(rb"""(window\.PUBLIC_URL\s*=\s*["'])/(?=["'])""")
_WEBPACK_PUBLIC_PATH = re.compile(rb'(__webpack_require__\.p = ")/(?=")')
_CSS_URL = re.compile(rb"(url\([\"']?)/(?!/)")
_MANIFEST_URL = re.compile(rb'("(?:src|start_url|scope)"\s*:\s*")/(?!/)')


def _rewrite(path: Path, pattern: re.Pattern[bytes], base: bytes) -> int:
    text = path.read_bytes()
    # Each pattern matches its context (group 1) and the "/" that follows it.
    rewritten, count = pattern.subn(lambda match: match[1] + base, text)
    if count:
        path.write_bytes(rewritten)
    return count


def rebase(root: Path, base: str = BASE_PATH) -> None:
    """Point the build's absolute URLs at ``base`` instead of ``/``."""
    prefix = base.encode()
    _rewrite(root / "index.html", _HTML_LINK, prefix)
    if not _rewrite(root / "index.html", _HTML_PUBLIC_URL, prefix):
        raise ViewerInstallError("index.html does not set window.PUBLIC_URL; unknown OHIF build")
    rebased = [path for path in root.rglob("*.js") if _rewrite(path, _WEBPACK_PUBLIC_PATH, prefix)]
    if not any(path.name.startswith("app.bundle.") for path in rebased):
        raise ViewerInstallError("no webpack public path in app.bundle.*.js; unknown OHIF build")
    for stylesheet in root.rglob("*.css"):
        _rewrite(stylesheet, _CSS_URL, prefix)
    if (root / "manifest.json").is_file():
        _rewrite(root / "manifest.json", _MANIFEST_URL, prefix)


def app_config(dicomweb_root: str, base: str = BASE_PATH) -> str:
    """OHIF's ``app-config.js`` for one data source: this node's DICOMweb service.

    The roots are server-relative (same origin), so the viewer works under whatever host, port
    and scheme the node is reached by. OHIF opens a study with one request for its metadata
    (``enableStudyLazyLoad: false``): pacsnode sends the stored gzip entry as it is, where the
    lazy way asks for each series' metadata, which is derived from it per request. That
    metadata names bulk data relative to the study (``series/{SE}/instances/{I}/bulkdata/
    {key}``), hence ``relativeResolution: 'studies'``; series and instance metadata carry
    absolute URIs, which OHIF keeps as they are.
    """
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "pacsnode",
        "configuration": {
            "friendlyName": "pacsnode",
            "name": "pacsnode",
            "qidoRoot": dicomweb_root,
            "wadoRoot": dicomweb_root,
            "wadoUriRoot": dicomweb_root,
            "qidoSupportsIncludeField": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "supportsReject": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": False,
            "dicomUploadEnabled": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        },
    }
    config = {
        "routerBasename": base.rstrip("/") or "/",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "maxNumberOfWebWorkers": 3,
        "showLoadingIndicator": True,
        "showCPUFallbackMessage": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "pacsnode",
        "dataSources": [source],
    }
    return (
        "// Written by `pacsnode viewer install`: OHIF reads this before it starts.\n"
        f"window.config = {json.dumps(config, indent=2)};\n"
    )


def installed(directory: Path) -> dict[str, Any] | None:
    """What ``install`` recorded in ``directory``, or ``None`` when no viewer is there."""
    try:
        return dict(json.loads((directory / MANIFEST).read_text()))
    except (OSError, ValueError):
        return None


def install(
    target: Path,
    dicomweb_root: str,
    version: str = DEFAULT_VERSION,
    registry: str = DEFAULT_REGISTRY,
    say: Callable[[str], None] = lambda _: None,
) -> Release:
    """Fetch, verify, unpack, rebase and configure a release, then swap it in at ``target``."""
    release = find_release(version, registry)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".viewer-install-") as work:
        scratch = Path(work)
        say(f"fetching {release.tarball}")
        tarball = download(release, scratch / "package.tgz")
        staged = scratch / "viewer"
        files = unpack_dist(tarball, staged)
        rebase(staged)
        (staged / "app-config.js").write_text(app_config(dicomweb_root))
        record = {"package": PACKAGE, "version": release.version, "tarball": release.tarball}
        (staged / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        _swap(staged, target, scratch / "previous")
        say(f"installed {PACKAGE}@{release.version} ({files} files) in {target}")
    return release


def _swap(staged: Path, target: Path, aside: Path) -> None:
    """Put ``staged`` at ``target``; a previous viewer goes ``aside``, which is deleted with
    the scratch folder (a symlink there is removed, not followed).

    Two renames: a running node answers 404 for the instant between them, never a mix of
    two releases' files.
    """
    if target.is_symlink() or target.exists():
        target.rename(aside)
    staged.rename(target)
