"""Every 4xx and 5xx answer is the JSON envelope; HTTP Basic authentication."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from pacsnode.node.auth import hash_password
from pacsnode.node.rest.app import create_app
from pacsnode.node.settings import User
from tests.node.rest.conftest import MakeClient, MakeCore, assert_error, node_config

MISSING = "00000000-00000000-00000000-00000000-00000000"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", f"/studies/{MISSING}", None, 404, "unknown-resource"),
        ("DELETE", f"/series/{MISSING}", None, 404, "unknown-resource"),
        ("GET", f"/instances/{MISSING}/file", None, 404, "unknown-resource"),
        ("GET", f"/studies/{MISSING}/archive", None, 404, "unknown-resource"),
        ("GET", f"/studies/{MISSING}/metadata", None, 404, "unknown-resource"),
        ("PUT", f"/patients/{MISSING}/attachments/1025", b"x", 404, "unknown-resource"),
        ("POST", "/instances", b"definitely not dicom", 400, "invalid-dicom"),
        ("POST", "/instances", b"", 400, "bad-request"),
        ("POST", "/tools/find", b"{not json", 400, "bad-request"),
        ("POST", "/tools/find", b'{"Level": "Galaxy", "Query": {}}', 400, "bad-request"),
        (
            "POST",
            "/tools/find",
            b'{"Level": "Study", "Query": {"NoSuchTag": "x"}}',
            400,
            "bad-request",
        ),
        ("GET", "/changes?since=abc", None, 400, "bad-request"),
        ("GET", "/changes?limit=-3", None, 400, "bad-request"),
        ("GET", "/studies?since=x", None, 400, "bad-request"),
        ("PUT", "/modalities/x", b"{not json", 400, "bad-request"),
        ("GET", "/peers/nobody", None, 404, "not-found"),
        ("POST", "/peers/nobody/sync", None, 404, "not-found"),
        ("PUT", "/peers/p", b"{not json", 400, "bad-request"),
        ("PUT", "/peers/p", b'{"Fingerprint": "AB"}', 400, "bad-request"),
        ("GET", "/no/such/route", None, 404, "http-error"),
    ],
)
async def test_errors_are_the_json_envelope(
    client: TestClient, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    response = await client.request(method, path, data=body)
    await assert_error(response, status, code)


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/system"), ("PUT", "/instances")])
async def test_a_wrong_method_is_a_bare_405(client: TestClient, method: str, path: str) -> None:
    """As Orthanc answers it: no body (so no content type), the allowed methods named."""
    response = await client.request(method, path, data=b"x")
    assert response.status == 405 and await response.read() == b""
    assert "GET" in response.headers["Allow"] or "POST" in response.headers["Allow"]


async def test_orthanc_error_fields(client: TestClient) -> None:
    unknown = await client.get("/studies/00000000-00000000-00000000-00000000-00000000")
    error = await assert_error(unknown, 404, "unknown-resource")
    assert (error["OrthancStatus"], error["OrthancError"]) == (17, "Unknown resource")
    bad = await assert_error(await client.post("/instances", data=b"nope"), 400, "invalid-dicom")
    assert bad["OrthancStatus"] == 15


async def test_an_unexpected_failure_is_a_bland_500(
    make_core: MakeCore, aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = node_config(tmp_path / "data")
    app = create_app(make_core(data_dir=config.core.data_dir), config)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail")

    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        error = await assert_error(await client.get("/broken"), 500, "internal-error")
    assert "secret" not in error["Message"] and "secret detail" in caplog.text


async def test_no_users_no_credentials_needed(client: TestClient) -> None:
    assert (await client.get("/system")).status == 200


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_basic_auth(make_client: MakeClient) -> None:
    client = await make_client(users=(User("alice", hash_password("secret")),))
    for headers in (
        {},
        basic("alice", "wrong"),
        basic("bob", "secret"),
        {"Authorization": "Bearer secret"},
        {"Authorization": "Basic ###"},
    ):
        for path in ("/system", "/no/such/route"):
            response = await client.get(path, headers=headers)
            await assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == 'Basic realm="pacsnode"'
    for _ in range(2):  # the second answer comes from the remembered verification
        assert (await client.get("/system", headers=basic("alice", "secret"))).status == 200
    missing = await client.get("/no/such/route", headers=basic("alice", "secret"))
    await assert_error(missing, 404, "http-error")
