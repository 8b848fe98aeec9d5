"""The example plugin package (``tests/plugins/example``), installed for real once per
session: ``pip install --target`` of a copy (so no build files land in the repository),
into a folder that in-process tests put on ``sys.path`` and node processes on
``PYTHONPATH``. ``importlib.metadata`` then finds its entry points, as it would in a
site-packages. The root ``conftest.py`` offers these fixtures to every suite, so the
contract suites can run against the example's plugins too.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "example"


@pytest.fixture(scope="session")
def example_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the example package is installed in."""
    source = tmp_path_factory.mktemp("example-source") / "example"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = tmp_path_factory.mktemp("example-plugins")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--target", target, source],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return target


@pytest.fixture(scope="session")
def example_plugins_importable(example_plugins: Path) -> Iterator[Path]:
    """The example package on ``sys.path`` for the rest of the session (module-scoped
    fixtures that build its plugins outlive a test's monkeypatch)."""
    sys.path.insert(0, str(example_plugins))
    importlib.invalidate_caches()
    yield example_plugins
    sys.path.remove(str(example_plugins))
