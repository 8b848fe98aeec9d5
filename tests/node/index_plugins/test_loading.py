"""Which index plugins a node builds: the main tags always, the search index with
``[search] enabled``, then ``[index] plugins``; the built-in ones are not named there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pacsnode.node.config import load_config
from pacsnode.node.core import NodeCore
from pacsnode.node.errors import ConfigError
from pacsnode.node.index_plugins.loading import IndexPlugins, build
from pacsnode.node.index_plugins.maintags import MainTagIndex
from pacsnode.node.plugins import PluginError
from pacsnode.node.search.plugin import SearchPlugin
from pacsnode.node.settings import CoreSettings, SearchSettings


def settings(tmp_path: Path, enabled: bool = True) -> CoreSettings:
    return CoreSettings(data_dir=tmp_path, search=SearchSettings(enabled=enabled))


def test_the_main_tags_always_and_the_search_index_when_enabled(tmp_path: Path) -> None:
    serving = IndexPlugins.configured(settings(tmp_path), feeders=True)
    assert isinstance(serving.main, MainTagIndex)
    assert [name for name, _ in serving.all] == ["maintags", "search"]
    assert isinstance(serving.search, SearchPlugin)
    assert serving.search.path == tmp_path / "search"
    off = IndexPlugins.configured(settings(tmp_path, enabled=False), feeders=True)
    assert off.others == [] and off.search is None
    command = IndexPlugins.configured(settings(tmp_path), feeders=False)  # e.g. import
    assert command.others == []


def test_a_missing_plugin_or_bad_settings_stop_the_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"no index plugin 'nope'.*pacsnode\.index"):
        build("nope", {}, tmp_path)
    with pytest.raises(PluginError, match="maintags"):
        build("maintags", {"colour": "blue"}, tmp_path)
    with pytest.raises(PluginError, match="commit_interval_s"):
        build("search", {"commit_interval_s": "soon"}, tmp_path)
    nope = dataclasses.replace(settings(tmp_path).plugins, index=("nope",))
    with pytest.raises(PluginError, match="nope"):
        IndexPlugins.configured(dataclasses.replace(settings(tmp_path), plugins=nope), True)


@pytest.mark.parametrize("name", ["maintags", "search"])
def test_built_in_plugins_are_not_named_in_index_plugins(tmp_path: Path, name: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'[index]\nplugins = ["{name}"]\n')
    with pytest.raises(ConfigError, match=f"'{name}' is built in"):
        load_config(path)


def test_a_plugin_that_does_not_start_stops_the_open_leaving_nothing_open(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "search").write_text("not a folder")  # the index cannot be made
    core = NodeCore(CoreSettings(data_dir=tmp_path / "data", ingest_workers=0))
    with pytest.raises(PluginError, match="index plugin 'search' failed to start"):
        core.open(background=False, search=True)
    assert not core.is_open
