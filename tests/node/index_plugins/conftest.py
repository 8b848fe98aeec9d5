"""Each index plugin, built from its entry point like any plugin and fed a real node core's
change feed, for the contract suite (:mod:`.test_contract`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.index_plugins.contract import IndexPlugin
from pacsnode.node.index_plugins.loading import build
from pacsnode.node.settings import CoreSettings
from tests.node.index_plugins.corpus import Item, corpus

#: every index plugin the contract suite runs against (entry point name, settings); another
#: joins with a line here (one installed by a fixture, as in tests/plugins/, puts its
#: folder on sys.path in ``_plugin`` first)
PLUGINS = [
    pytest.param(("maintags", {}), id="maintags"),
    pytest.param(("search", {"commit_interval_s": 0.05}), id="search"),
    # the example package's (tests/plugins/example), installed for real: pip runs, so e2e
    pytest.param(("example-bodypart", {}), id="example-bodypart", marks=pytest.mark.e2e),
]


@dataclass
class Fed:
    """A started plugin, the core whose feed it follows, and what was stored there."""

    plugin: IndexPlugin
    core: NodeCore
    items: list[Item]


def caught_up(plugin: IndexPlugin, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (lag := plugin.lag()) > 0:
        assert time.monotonic() < deadline, f"the plugin is still {lag} changes behind"
        time.sleep(0.02)


def _importable(request: pytest.FixtureRequest, name: str) -> None:
    if name.startswith("example-"):  # the example package's: installed once per session
        request.getfixturevalue("example_plugins_importable")


def _plugin(name: str, settings: Mapping[str, Any], data_dir: Path) -> Iterator[Fed]:
    core = NodeCore(CoreSettings(data_dir=data_dir, ingest_workers=0))
    core.open(background=False)  # no plugins of its own but the main tags: the test's
    plugin = build(name, settings, data_dir)
    plugin.start(core)
    items = corpus()
    try:
        for item in items:
            core.ingest(item.data)
        caught_up(plugin)
        yield Fed(plugin, core, items)
    finally:
        plugin.stop()
        core.close()


@pytest.fixture(scope="module", params=PLUGINS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    """A plugin fed the corpus, shared by the module's read-only tests."""
    name, settings = request.param
    _importable(request, name)
    yield from _plugin(name, settings, tmp_path_factory.mktemp(name) / "data")


@pytest.fixture(params=PLUGINS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fed]:
    """A plugin fed the corpus, for one test that changes what is stored."""
    name, settings = request.param
    _importable(request, name)
    yield from _plugin(name, settings, tmp_path / "data")
