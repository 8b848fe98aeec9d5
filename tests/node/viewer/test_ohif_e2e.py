"""The OHIF Viewer, installed by ``pacsnode viewer install`` and served under ``/viewer/``, in
a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real node
with users: the study list shows the stored CT study, and opening it draws the first image.

The installed viewer is cached in ``~/.cache/pacsnode-test-ohif`` (``PACSNODE_TEST_OHIF_CACHE``)
across runs; the first run fetches it from the npm registry (about 5 s). Screenshots and the
browser's console land in ``tests/artifacts/`` (``PACSNODE_TEST_ARTIFACTS``), kept by git's
ignore list out of commits: ``ohif-study-list.png`` and ``ohif-viewer.png``, which shows the
image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.synthetic import SeriesSpec, series_files
from pacsnode.node.auth import hash_password
from pacsnode.node.viewer.install import DEFAULT_REGISTRY, DEFAULT_VERSION, find_release, installed
from tests.node.server import REPO, NodeProcess

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CACHE = Path(os.environ.get("PACSNODE_TEST_OHIF_CACHE", Path.home() / ".cache/pacsnode-test-ohif"))
ARTIFACTS = Path(os.environ.get("PACSNODE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
USER, PASSWORD = "viewer", "ohif-e2e"
#: OHIF shows DICOM person names as "Family, Given"
PATIENT = SeriesSpec(patient=4242, study=1, series=1, count=5, size=256)
SHOWN_NAME = "Synthetic, Patient4242"
#: no GPU here: Chromium gives WebGL through SwiftShader only when asked (OHIF would fall
#: back to its slower CPU rendering otherwise)
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
WAIT_MS = 90_000

#: True once a drawn canvas has content: enough non-black pixels in several grey levels
#: (a blank, black or one-colour canvas is not an image)
CANVAS_DRAWN = """() => {
  for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const context = canvas.getContext('2d', {willReadFrequently: true});
    if (!context) continue;
    const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
    let lit = 0;
    const levels = new Set();
    for (let i = 0; i < data.length; i += 4 * 7) {
      if (data[i] + data[i + 1] + data[i + 2] > 48) lit++;
      levels.add(data[i] >> 3);
    }
    if (lit > 0.02 * data.length / 28 && levels.size >= 8) return true;
  }
  return false;
}"""


def _registry_reachable() -> bool:
    try:
        find_release(DEFAULT_VERSION, DEFAULT_REGISTRY)
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def ohif_build() -> Path:
    """The viewer as ``pacsnode viewer install`` installs it, into the cache once."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: Debian's chromium package is needed (.ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package (test extra)")
    viewer = CACHE / "viewer"
    if (installed(viewer) or {}).get("version") == DEFAULT_VERSION:
        return viewer
    if not _registry_reachable():
        pytest.skip(f"{DEFAULT_REGISTRY} is unreachable and no viewer is cached in {CACHE}")
    CACHE.mkdir(parents=True, exist_ok=True)
    config = CACHE / "pacsnode.toml"
    config.write_text(f'data_dir = "{CACHE}"\n')
    command = [sys.executable, "-m", "pacsnode.node.cli", "--config", str(config)]
    result = subprocess.run(
        [*command, "viewer", "install"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert (installed(viewer) or {}).get("version") == DEFAULT_VERSION
    return viewer


@pytest.fixture
def node(ohif_build: Path, tmp_path: Path) -> Iterator[NodeProcess]:
    users = f'[[users]]\nname = "{USER}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    process = NodeProcess(tmp_path / "node", extra_toml=users, credentials=(USER, PASSWORD))
    # The node serves its data_dir/viewer; here that is the cached install.
    (process.directory / "data").mkdir()
    (process.directory / "data" / "viewer").symlink_to(ohif_build, target_is_directory=True)
    process.start()
    yield process
    process.stop()


def _store_ct_series(node: NodeProcess) -> None:
    for blob in series_files(PATIENT):
        response = node.request("POST", "/instances", blob, {"Content-Type": "application/dicom"})
        assert response.status == 200, response.body


def _click_if_shown(page: object, text: str) -> None:
    """Dismiss OHIF's notices (investigational use, the first-visit tour) if they are up."""
    button = page.get_by_text(text, exact=True)  # type: ignore[attr-defined]
    if button.count() and button.first.is_visible():
        button.first.click()


def test_ohif_lists_the_study_and_draws_its_first_ct_image(node: NodeProcess) -> None:
    from playwright.sync_api import sync_playwright

    _store_ct_series(node)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    problems: list[str] = []
    dicomweb: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))

        def on_response(response: object) -> None:
            status, url = response.status, response.url  # type: ignore[attr-defined]
            if "/dicom-web/" in url:
                dicomweb.append(f"{status} {url}")
            if status >= 400:
                problems.append(f"{status} {url}")

        page.on("response", on_response)
        try:
            page.goto(f"{node.url}/viewer/")
            study = page.get_by_text(SHOWN_NAME, exact=True)
            study.wait_for(timeout=WAIT_MS)
            _click_if_shown(page, "Confirm and hide")
            page.screenshot(path=ARTIFACTS / "ohif-study-list.png")

            study.click()
            page.get_by_role("button", name="Basic Viewer").click()
            page.wait_for_url("**/viewer/viewer?StudyInstanceUIDs=*", timeout=WAIT_MS)
            page.wait_for_function(CANVAS_DRAWN, timeout=WAIT_MS, polling=250)
            _click_if_shown(page, "Skip all")
            page.wait_for_function(CANVAS_DRAWN, timeout=WAIT_MS, polling=250)
        finally:
            page.screenshot(path=ARTIFACTS / "ohif-viewer.png")
            (ARTIFACTS / "ohif-console.log").write_text(
                "\n".join([*console, "", "DICOMweb:", *dicomweb, "", "problems:", *problems])
            )
            browser.close()

    assert any("/frames/1" in line and line.startswith("200 ") for line in dicomweb), dicomweb
    assert not problems, "\n".join(problems)
    errors = [line for line in console if line.startswith("error:")]
    assert not errors, "\n".join(errors)
