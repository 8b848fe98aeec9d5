"""Browser tests of the UI: a real node (``pacsnode serve``) with a user, and Debian's
Chromium driven by Playwright's Python package (pointed at ``/usr/bin/chromium``: no browser
download). Screenshots land in ``tests/artifacts/`` (``PACSNODE_TEST_ARTIFACTS``), which
git ignores, as ``ui-*.png``: at 1366x768 and at a phone's 390x844.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synthetic import SeriesSpec, series_files
from pacsnode.node.auth import hash_password
from tests.node.server import REPO, NodeProcess

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PACSNODE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
USER, PASSWORD = "operator", "ui-e2e-password"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000


def users_toml() -> str:
    return f'[[users]]\nname = "{USER}"\npassword_hash = "{hash_password(PASSWORD)}"\n'


def store(node: NodeProcess, spec: SeriesSpec) -> None:
    for blob in series_files(spec):
        response = node.request("POST", "/instances", blob, {"Content-Type": "application/dicom"})
        assert response.status == 200, response.body


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path / "node", extra_toml=users_toml(), credentials=(USER, PASSWORD))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module-scoped, not session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, which breaks every asyncio test collected after it.
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: Debian's chromium package is needed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


class Browsing:
    """A browser context logged in with HTTP Basic, collecting what went wrong on pages."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD}, viewport=viewport
        )
        self.problems: list[str] = []
        #: URLs whose error answers a test expects (a refused upload is a 400)
        self.expected: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and not any(e in r.url for e in self.expected)
                else None
            ),
        )
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text}")
                if m.type == "error" and not (self.expected and "Failed to load resource" in m.text)
                else None
            ),
        )
        return page

    def screenshot(self, name: str, page: Any = None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"ui-{name}.png"
        (page or self.page).screenshot(path=path, full_page=False)
        return path


@pytest.fixture
def desktop(browser: Any) -> Iterator[Browsing]:
    browsing = Browsing(browser, DESKTOP)
    yield browsing
    browsing.context.close()
    assert not browsing.problems, browsing.problems


@pytest.fixture
def phone(browser: Any) -> Iterator[Browsing]:
    browsing = Browsing(browser, PHONE)
    yield browsing
    browsing.context.close()
    assert not browsing.problems, browsing.problems
