"""The OHIF Viewer, installed by ``pacsnode viewer install`` and served under ``/viewer/``, in
a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real node
with users: the study list shows the stored CT study, opening it draws the first image, and
OHIF's upload dialog stores files through STOW-RS.

The installed viewer is cached in ``~/.cache/pacsnode-test-ohif`` (``PACSNODE_TEST_OHIF_CACHE``)
across runs, installed again when it is not what this pacsnode would install (the first run
fetches it from the npm registry, about 5 s). Screenshots land in ``tests/artifacts/``
(``PACSNODE_TEST_ARTIFACTS``; git ignores it): ``ohif-study-list.png``, ``ohif-viewer.png``
(the CT image) and ``ohif-upload.png``, each page's state at the end of its test, also of a
failed one, with the browser's console and DICOMweb requests beside it (``ohif-*-console.log``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synthetic import SeriesSpec, series_files, uid
from pacsnode.node.auth import hash_password
from pacsnode.node.settings import DicomWebSettings
from pacsnode.node.viewer.install import (
    DEFAULT_REGISTRY,
    DEFAULT_VERSION,
    app_config,
    find_release,
    installed,
)
from tests.node.server import REPO, NodeProcess

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CACHE = Path(os.environ.get("PACSNODE_TEST_OHIF_CACHE", Path.home() / ".cache/pacsnode-test-ohif"))
ARTIFACTS = Path(os.environ.get("PACSNODE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
USER, PASSWORD = "viewer", "ohif-e2e"
PATIENT = SeriesSpec(patient=4242, study=1, series=1, count=5, size=256)
UPLOADED = SeriesSpec(patient=4343, study=1, series=1, count=2, size=128)
#: OHIF shows DICOM person names as "Family, Given"
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


def _is_current(viewer: Path) -> bool:
    """The cached install is what this pacsnode would install now."""
    if (installed(viewer) or {}).get("version") != DEFAULT_VERSION:
        return False
    return (viewer / "app-config.js").read_text() == app_config(DicomWebSettings().root)


@pytest.fixture(scope="module")
def ohif_build() -> Path:
    """The viewer as ``pacsnode viewer install`` installs it, into the cache once."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: Debian's chromium package is needed (.ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package (test extra)")
    viewer = CACHE / "viewer"
    if _is_current(viewer):
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
    assert _is_current(viewer)
    return viewer


@pytest.fixture(scope="module")
def node(ohif_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    users = f'[[users]]\nname = "{USER}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    directory = tmp_path_factory.mktemp("ohif-node")
    process = NodeProcess(directory, extra_toml=users, credentials=(USER, PASSWORD))
    # The node serves its data_dir/viewer; here that is the cached install.
    (directory / "data").mkdir()
    (directory / "data" / "viewer").symlink_to(ohif_build, target_is_directory=True)
    process.start()
    for blob in series_files(PATIENT):
        response = process.request(
            "POST", "/instances", blob, {"Content-Type": "application/dicom"}
        )
        assert response.status == 200, response.body
    yield process
    process.stop()


class Browser:
    """One page in Chromium, logged in, with what it said and asked recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.problems: list[str] = []
        self.dicomweb: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: self.problems.append(f"failed: {request.url}"))
        page.on("response", self._on_response)

    def _on_response(self, response: Any) -> None:
        line = f"{response.status} {response.request.method} {response.url}"
        if "/dicom-web/" in response.url:
            self.dicomweb.append(line)
        if response.status >= 400:
            self.problems.append(line)

    def click_if_shown(self, text: str) -> None:
        """Dismiss OHIF's notices (investigational use, the first-visit tour) if they are up."""
        button = self.page.get_by_text(text, exact=True)
        if button.count() and button.first.is_visible():
            button.first.click()

    def save(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"ohif-{name}.png")
        (ARTIFACTS / f"ohif-{name}-console.log").write_text(
            "\n".join(
                [*self.console, "", "DICOMweb:", *self.dicomweb, "", "problems:", *self.problems]
            )
        )

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)
        errors = [line for line in self.console if line.startswith("error:")]
        assert not errors, "\n".join(errors)


@pytest.fixture
def browser(node: NodeProcess) -> Iterator[Callable[[str], Browser]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = chromium.new_context(
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": 1400, "height": 900},
        )
        opened: list[tuple[str, Browser]] = []

        def open_page(name: str) -> Browser:
            opened.append((name, Browser(context.new_page())))
            return opened[-1][1]

        try:
            yield open_page
        finally:
            for name, page in opened:  # the last state, also of a failed test
                page.save(name)
            chromium.close()


def test_ohif_lists_the_study_and_draws_its_first_ct_image(
    node: NodeProcess, browser: Callable[[str], Browser]
) -> None:
    viewer = browser("viewer")
    page = viewer.page
    page.goto(f"{node.url}/viewer/")
    study = page.get_by_text(SHOWN_NAME, exact=True)
    study.wait_for(timeout=WAIT_MS)
    viewer.click_if_shown("Confirm and hide")
    page.screenshot(path=ARTIFACTS / "ohif-study-list.png")

    study.click()
    page.get_by_role("button", name="Basic Viewer").click()
    page.wait_for_url("**/viewer/viewer?StudyInstanceUIDs=*", timeout=WAIT_MS)
    page.wait_for_function(CANVAS_DRAWN, timeout=WAIT_MS, polling=250)
    viewer.click_if_shown("Skip all")
    page.wait_for_function(CANVAS_DRAWN, timeout=WAIT_MS, polling=250)

    # The study's stored metadata in one request (names relative to the study resolved by
    # OHIF), then a frame of each slice.
    assert f"200 GET {node.url}/dicom-web/studies/{uid(PATIENT.patient, 1)}/metadata" in (
        viewer.dicomweb
    )
    frames = [line for line in viewer.dicomweb if "/frames/1" in line]
    assert frames and all(line.startswith("200 ") for line in frames), viewer.dicomweb
    viewer.assert_clean()


def test_ohif_uploads_files_through_stow_rs(
    node: NodeProcess, browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    files = []
    for index, blob in enumerate(series_files(UPLOADED)):
        files.append(tmp_path / f"upload-{index}.dcm")
        files[-1].write_bytes(blob)
    upload = browser("upload")
    page = upload.page
    page.goto(f"{node.url}/viewer/")
    page.get_by_text(SHOWN_NAME, exact=True).wait_for(timeout=WAIT_MS)
    upload.click_if_shown("Confirm and hide")

    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").first.set_input_files(files)
    page.get_by_text(f"{len(files)} files completed.").wait_for(timeout=WAIT_MS)

    def stored() -> list[str]:
        return [line for line in upload.dicomweb if " POST " in line]

    for _ in range(50):  # Playwright may report the responses after the page has shown them
        if len(stored()) >= len(files):
            break
        page.wait_for_timeout(100)
    assert stored() and all(line.startswith("200 POST") for line in stored()), upload.dicomweb
    answer = node.request("GET", f"/dicom-web/studies?PatientID=PAT{UPLOADED.patient:05d}")
    assert answer.status == 200 and len(answer.json()) == 1
    upload.assert_clean()
