"""``[search]`` in the configuration: on by default, its keys checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.node.config import load_config
from pacsnode.node.errors import ConfigError
from pacsnode.node.settings import SearchSettings


def test_search_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    assert load_config().core.search == SearchSettings(enabled=True, commit_interval_s=1.0)
    path = tmp_path / "node.toml"
    path.write_text("[search]\nenabled = false\ncommit_interval_s = 2\n")
    assert load_config(path).core.search == SearchSettings(enabled=False, commit_interval_s=2.0)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[search]\nenabled = 1\n", "search.enabled"),
        ("[search]\ncommit_interval_s = -1\n", "search.commit_interval_s"),
        ("[search]\nfolder = 'x'\n", "search.folder"),
    ],
)
def test_bad_search_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(path)
