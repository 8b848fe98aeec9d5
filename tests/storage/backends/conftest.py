"""The storage backends the contract suite runs against.

Each is a fixture that gives a :class:`Place`: a plugin name, its settings and a data
directory, fresh for the test. The suite builds backends there through the plugin's entry
point, as the node does, and builds another on the same place to play a restart. A new
backend joins the suite with its fixture and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from pacsnode.storage.backends.base import SealedBackend
from tests.s3_server import BUCKET, SeaweedFS, unique_prefix

#: the fixtures of every backend under contract, one line each
BACKENDS = [
    "local_place",
    "s3_place",
    # the example package's (tests/plugins/example), installed for real: pip runs, so e2e
    pytest.param("example_place", marks=pytest.mark.e2e),
]


@dataclass
class Place:
    """Where a backend keeps its studies, and how to build one there (again)."""

    plugin: str
    data_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def build(self) -> SealedBackend:
        (entry,) = entry_points(group="pacsnode.storage", name=self.plugin)
        backend: SealedBackend = entry.load()(self.settings, self.data_dir)
        return backend


@pytest.fixture
def local_place(tmp_path: Path) -> Place:
    return Place("local", tmp_path / "data")


@pytest.fixture
def s3_place(seaweedfs: SeaweedFS, tmp_path: Path) -> Place:
    # 5 MiB parts (S3's least), so a test ZIP of a few parts is uploaded in parts.
    settings = seaweedfs.settings(BUCKET, unique_prefix(), part_mb=5)
    return Place("s3", tmp_path / "data", settings)


@pytest.fixture
def example_place(example_plugins_importable: Path, tmp_path: Path) -> Place:
    return Place("example-dir", tmp_path / "data", {"root": "elsewhere"})


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest) -> Place:
    found: Place = request.getfixturevalue(request.param)
    found.data_dir.mkdir(parents=True, exist_ok=True)
    return found
