"""The UI's templates and assets are package data: a built wheel carries them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pacsnode.node.ui.render import STATIC, TEMPLATES
from tests.test_packaging import _wheel

pytestmark = pytest.mark.e2e  # builds a wheel


def test_the_wheel_carries_the_templates_and_assets(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(_wheel(tmp_path)).namelist())
    shipped = [*TEMPLATES.glob("*.html"), *STATIC.iterdir()]
    assert len(shipped) >= 10
    for path in shipped:
        assert f"pacsnode/node/ui/{path.parent.name}/{path.name}" in names
