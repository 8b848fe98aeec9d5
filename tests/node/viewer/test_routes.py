"""``/viewer/`` in-process: the installed files as a single-page app, or a 404 that says how
to install it."""

from __future__ import annotations

import base64
from pathlib import Path

from aiohttp.test_utils import TestClient

from pacsnode.node.auth import hash_password
from pacsnode.node.settings import User
from pacsnode.node.viewer.install import rebase, unpack_dist
from tests.node.rest.conftest import MakeClient, assert_error
from tests.node.viewer.build import ohif_tarball


def _install(data_dir: Path) -> Path:
    tarball = data_dir.parent / "package.tgz"
    tarball.write_bytes(ohif_tarball())
    viewer = data_dir / "viewer"
    unpack_dist(tarball, viewer)
    rebase(viewer)
    return viewer


async def test_without_a_viewer_the_answer_says_how_to_install_it(client: TestClient) -> None:
    for path in ("/viewer/", "/viewer/viewer", "/viewer/app-config.js"):
        error = await assert_error(await client.get(path), 404, "viewer-not-installed")
        assert "pacsnode viewer install" in error["Message"]


async def test_files_with_their_types_and_caching(client: TestClient, tmp_path: Path) -> None:
    _install(tmp_path / "data")
    expected = {
        "/viewer/app.bundle.0f6159c501addfe9.js": ("text/javascript", "immutable"),
        "/viewer/0ddf166f7a343eda.wasm": ("application/wasm", "immutable"),
        "/viewer/a34f9d1faa5f3315.woff2": ("font/woff2", "immutable"),
        "/viewer/app.bundle.css": ("text/css", "no-cache"),  # not hashed: revalidated
        "/viewer/app-config.js": ("text/javascript", "no-cache"),
        "/viewer/manifest.json": ("application/json", "no-cache"),
        "/viewer/assets/icon.png": ("image/png", "no-cache"),
    }
    for path, (content_type, cache) in expected.items():
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type, path
        assert cache in response.headers["Cache-Control"], path
        assert response.headers["ETag"]


async def test_routes_of_the_app_answer_index_html(client: TestClient, tmp_path: Path) -> None:
    index = (_install(tmp_path / "data") / "index.html").read_bytes()
    for path in ("/viewer/", "/viewer/viewer?StudyInstanceUIDs=1.2.3", "/viewer/segmentation"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-cache"
        assert await response.read() == index
    revalidated = await client.get("/viewer/", headers={"If-None-Match": response.headers["ETag"]})
    assert revalidated.status == 304


async def test_a_missing_asset_is_a_404_not_html(client: TestClient, tmp_path: Path) -> None:
    _install(tmp_path / "data")
    await assert_error(
        await client.get("/viewer/9999.bundle.0123456789abcdef.js"), 404, "http-error"
    )


async def test_no_file_outside_the_viewer_is_served(client: TestClient, tmp_path: Path) -> None:
    _install(tmp_path / "data")
    (tmp_path / "data" / "secret.txt").write_text("the content of a file beside the viewer")
    for path in ("/viewer/%2e%2e/secret.txt", "/viewer/..%2fsecret.txt", "/viewer/../secret.txt"):
        response = await client.get(path)
        assert b"the content" not in await response.read(), path


async def test_viewer_without_slash_redirects(client: TestClient, tmp_path: Path) -> None:
    _install(tmp_path / "data")
    response = await client.get("/viewer", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/viewer/"


async def test_the_rest_apis_users_apply(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(users=(User("alice", hash_password("s3cret")),))
    _install(tmp_path / "data")
    await assert_error(await client.get("/viewer/"), 401, "unauthorized")
    token = base64.b64encode(b"alice:s3cret").decode()
    response = await client.get("/viewer/", headers={"Authorization": f"Basic {token}"})
    assert response.status == 200
