"""The REST app in-process: ``aiohttp_client(create_app(core, config))`` over a real core."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pacsnode.node.config import load_config
from pacsnode.node.core import NodeCore
from pacsnode.node.rest.app import create_app
from pacsnode.node.settings import CoreSettings, NodeConfig

MakeClient = Callable[..., Awaitable[TestClient]]
MakeCore = Callable[..., NodeCore]


def node_config(data_dir: Path, **changes: Any) -> NodeConfig:
    """The embedded defaults, with the data in ``data_dir`` and ``changes`` applied."""
    return dataclasses.replace(load_config(), core=CoreSettings(data_dir=data_dir), **changes)


@pytest.fixture
def make_client(make_core: MakeCore, aiohttp_client: Any, tmp_path: Path) -> MakeClient:
    # make_core comes first: the client (and its app) is closed before the core.
    async def make(**changes: Any) -> TestClient:
        config = node_config(tmp_path / "data", **changes)
        core = make_core(data_dir=config.core.data_dir)
        return await aiohttp_client(create_app(core, config))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


async def upload(client: TestClient, data: bytes) -> Any:
    response = await client.post("/instances", data=data)
    assert response.status == 200, await response.text()
    return await response.json()


async def get_json(client: TestClient, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


async def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The JSON error envelope every 4xx and 5xx answer carries."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = await response.json()
    assert set(error) == {
        "HttpStatus",
        "HttpError",
        "ErrorCode",
        "Message",
        "Method",
        "Uri",
        "OrthancStatus",
        "OrthancError",
    }
    assert isinstance(error["OrthancStatus"], int) and error["OrthancError"]
    assert error["HttpStatus"] == status and error["ErrorCode"] == code
    assert error["HttpError"] and error["Message"] and "Traceback" not in error["Message"]
    assert error["Method"] == response.method and error["Uri"] == response.url.path
    return error
