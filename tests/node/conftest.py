from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.settings import CoreSettings
from tests.node.server import NodeProcess

MakeCore = Callable[..., NodeCore]


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[MakeCore]:
    opened: list[NodeCore] = []

    def make(*, background: bool = False, search: bool | None = None, **settings: Any) -> NodeCore:
        settings.setdefault("data_dir", tmp_path / "data")
        core = NodeCore(CoreSettings(**settings))
        core.open(background=background, search=search)
        opened.append(core)
        return core

    yield make
    for core in opened:
        if core.is_open:
            core.close()


@pytest.fixture
def core(make_core: MakeCore) -> NodeCore:
    return make_core()


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path).start()
    yield process
    process.stop()
