"""The example package for these tests: installed once per session
(:mod:`tests.plugins.example_package`, offered by the root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def installed(example_plugins: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example package importable in this process, for this test."""
    monkeypatch.syspath_prepend(str(example_plugins))
    return example_plugins
