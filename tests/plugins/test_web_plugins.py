"""Web plugins in-process: the example package's plugins mounted by ``create_app`` over a
real core, served on a loopback port by aiohttp's test server."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from benchmarks.synthetic import SeriesSpec, series_files
from pacsnode.node.auth import hash_password
from pacsnode.node.config import load_config
from pacsnode.node.core import NodeCore
from pacsnode.node.plugins import PluginError
from pacsnode.node.rest.app import create_app
from pacsnode.node.settings import CoreSettings, PluginSettings, Role, User
from tests.node.rest.conftest import assert_error

pytestmark = pytest.mark.e2e  # pip installs the example package

MakeClient = Callable[..., Awaitable[TestClient]]
PASSWORD = "plugin-tests"
USERS = (
    User("reader", hash_password(PASSWORD), Role.READ_ONLY),
    User("writer", hash_password(PASSWORD), Role.READ_WRITE),
)


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()}


def plugin_settings(*web: str, settings: dict[str, dict[str, Any]] | None = None) -> PluginSettings:
    return PluginSettings(web=web, settings=settings or {})


@pytest.fixture
async def make_client(
    installed: Path, aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[MakeClient]:
    cores: list[NodeCore] = []

    async def make(plugins: PluginSettings, **changes: Any) -> TestClient:
        core = NodeCore(CoreSettings(data_dir=tmp_path / "data", plugins=plugins))
        core.open(background=False)
        cores.append(core)
        config = dataclasses.replace(load_config(), core=core.settings, **changes)
        return await aiohttp_client(create_app(core, config))

    yield make
    for core in cores:
        core.close()


async def store(client: TestClient, spec: SeriesSpec, headers: dict[str, str]) -> None:
    for blob in series_files(spec):
        answer = await client.post("/instances", data=blob, headers=headers)
        assert answer.status == 200, await answer.text()


async def test_the_example_counts_studies_per_modality(make_client: MakeClient) -> None:
    client = await make_client(
        plugin_settings(
            "example", "example-faulty", settings={"example": {"title": "Per modality"}}
        )
    )
    assert await (await client.get("/plugins/example/modalities")).json() == {}
    # two studies with CT; the second has an MR series too
    for spec in (SeriesSpec(1, 1, 1, 2, 16), SeriesSpec(1, 2, 1, 1, 16)):
        await store(client, spec, {})
    await store(client, SeriesSpec(1, 2, 2, 1, 16, modality="MR"), {})
    answer = await client.get("/plugins/example/modalities")
    assert answer.status == 200 and await answer.json() == {"CT": 2, "MR": 1}
    page = await client.get("/plugins/example/")
    assert page.content_type == "text/html" and "<td>MR</td><td>1</td>" in await page.text()
    folder = await client.get("/plugins/example?x=1", allow_redirects=False)
    assert folder.status == 308 and folder.headers["Location"] == "/plugins/example/?x=1"
    # listed as Orthanc lists its plugins; its /plugins/example stays its folder
    listed = await (await client.get("/plugins")).json()
    assert listed[-2:] == ["example", "example-faulty"]
    # the UI links to its page, with the title from its settings; the faulty one has none
    studies = await (await client.get("/ui/studies")).text()
    assert '<a href="/plugins/example/" class="plugin" data-plugin="example">Per modality</a>' in (
        studies
    )
    assert 'data-plugin="example-faulty"' not in studies


async def test_a_raising_handler_is_a_500_naming_the_plugin(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(plugin_settings("example-faulty"))
    with caplog.at_level(logging.ERROR):
        answer = await client.get("/plugins/example-faulty/fail")
    error = await assert_error(answer, 500, "plugin-error")
    assert "example-faulty" in error["Message"]
    assert "secret" not in await answer.text()  # nothing of the exception reaches the client
    logged = [r for r in caplog.records if "example-faulty" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None, caplog.records
    await assert_error(await client.get("/plugins/example-faulty/nothing"), 404, "http-error")
    assert (await client.get("/system")).status == 200  # the node keeps serving
    assert (await client.get("/plugins/example-faulty/fail")).status == 500


async def test_plugins_are_behind_the_nodes_users_and_roles(make_client: MakeClient) -> None:
    client = await make_client(plugin_settings("example", "example-faulty"), users=USERS)
    await assert_error(await client.get("/plugins/example/modalities"), 401, "unauthorized")
    reading = await client.get("/plugins/example/modalities", headers=basic("reader"))
    assert reading.status == 200
    echo = "/plugins/example-faulty/echo"
    refused = await client.post(echo, json={"a": 1}, headers=basic("reader"))
    await assert_error(refused, 403, "forbidden")
    written = await client.post(echo, json={"a": 1}, headers=basic("writer"))
    assert written.status == 200 and await written.json() == {"a": 1}


@pytest.mark.parametrize(
    ("plugins", "said"),
    [
        (
            plugin_settings("example-broken"),
            "(pacsnode.web: pacsnode_example_plugin.broken:plugin)",
        ),
        (
            plugin_settings("example", settings={"example": {"colour": "red"}}),
            "(pacsnode.web: pacsnode_example_plugin.web:modalities_plugin) refuses its settings: "
            "[plugins.example] unknown setting(s) colour",
        ),
        (plugin_settings("no-such-plugin"), "no entry point 'no-such-plugin' in group"),
        (
            plugin_settings("example", settings={"example": {"title": ""}}),
            "(pacsnode.web: pacsnode_example_plugin.web:modalities_plugin) a panel's title "
            "takes 1 to 40 characters, not ''",
        ),
        (
            plugin_settings("example-faulty", settings={"example-faulty": {"fail_at_start": True}}),
            "(pacsnode.web: pacsnode_example_plugin.web:faulty_plugin) failed to start: "
            "ConnectionRefusedError: the example's database does not answer",
        ),
    ],
)
async def test_a_broken_plugin_stops_the_app(
    make_client: MakeClient, plugins: PluginSettings, said: str
) -> None:
    with pytest.raises(PluginError) as raised:  # when the app is made, or when it starts
        await make_client(plugins)
    assert said in raised.value.message
