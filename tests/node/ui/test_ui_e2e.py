"""The UI as a person uses it, in a real Chromium against real nodes: search, the study
page's thumbnails and viewer, a folder upload, a sync started from the peers page, and a
deletion. Each test leaves screenshots in the artefacts folder (see conftest)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from tests.node.server import NodeProcess
from tests.node.test_audit import events_of
from tests.node.ui.conftest import DESKTOP, PASSWORD, USER, Browsing, store, users_toml
from tests.peer.test_replication import linked_sites

pytestmark = pytest.mark.e2e

#: True once an <img> shows a picture: loaded, and not one flat colour
IMAGE_SHOWN = """(img) => {
  if (!img.complete || !img.naturalWidth) return false;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4 * 13) levels.add(data[i] >> 3);
  return levels.size >= 4;
}"""


def _wait_shown(page: Any, selector: str) -> None:
    page.wait_for_function(f"() => [...document.querySelectorAll({selector!r})].length > 0")
    for handle in page.query_selector_all(selector):
        page.wait_for_function(IMAGE_SHOWN, arg=handle)


def _studies(node: NodeProcess) -> list[str]:
    return node.request("GET", "/studies").json()


def test_search_finds_a_study(node: NodeProcess, desktop: Browsing, phone: Browsing) -> None:
    for patient in (1, 2, 3):
        store(node, SeriesSpec(patient=patient, study=1, series=1, count=2, size=64))
    page = desktop.page
    page.goto(f"{node.url}/ui/")
    assert page.url.endswith("/ui/studies")
    assert page.locator("#count").inner_text().strip() == "3 studies"
    assert page.locator("table.studies tbody tr").count() == 3
    desktop.screenshot("studies")

    page.fill('input[name="name"]', "patient2")
    page.click('form.search button[type="submit"]')
    page.wait_for_url(re.compile(r"name=patient2"))
    assert page.locator("#count").inner_text().strip() == "1 of 3 studies match"
    rows = page.locator("table.studies tbody tr")
    assert rows.count() == 1
    assert "Synthetic, Patient2" in rows.first.inner_text()
    desktop.screenshot("studies-search")

    # The search is a URL: the same address in another browser shows the same answer.
    phone.page.goto(page.url)
    assert phone.page.locator("table.studies tbody tr").count() == 1
    phone.screenshot("studies-search-phone")

    rows.first.locator("a").click()
    page.wait_for_url(re.compile(r"/ui/studies/[0-9a-f-]+"))
    assert "PAT00002" in page.locator("h1").inner_text()


def test_study_page_shows_thumbnails_and_an_image(
    node: NodeProcess, desktop: Browsing, phone: Browsing
) -> None:
    store(node, SeriesSpec(patient=7, study=1, series=1, count=6, size=256))
    store(node, SeriesSpec(patient=7, study=1, series=2, count=3, size=128))
    (study_id,) = _studies(node)
    page = desktop.page
    page.goto(f"{node.url}/ui/studies/{study_id}")
    assert page.locator("ul.series li").count() == 2
    _wait_shown(page, "ul.series img")
    _wait_shown(page, "section.viewer img")
    assert page.locator('[data-role="position-label"]').inner_text() == "1 / 6"
    first = page.locator("section.viewer img").get_attribute("src")

    # Scrolling the series shows the next image; a window preset re-renders it windowed.
    page.focus('[data-role="frame"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.locator('[data-role="position-label"]').inner_text() == "3 / 6"
    _wait_shown(page, "section.viewer img")
    third = page.locator("section.viewer img").get_attribute("src")
    assert third != first and "/rendered" in third
    page.select_option('[data-role="preset"]', "-600,1500")
    page.wait_for_function(
        "() => document.querySelector('section.viewer img').src.includes('window=-600,1500')"
    )
    _wait_shown(page, "section.viewer img")
    page.select_option('[data-role="zoom"]', "150")
    desktop.screenshot("study-viewer")
    page.evaluate("window.scrollTo(0, 0)")
    desktop.screenshot("study")

    # The tags of the image shown, as a tree.
    page.click('[data-role="tags"]')
    page.wait_for_url(re.compile(r"/ui/instances/"))
    assert page.get_by_text("PatientName", exact=True).count() == 1
    desktop.screenshot("tags")

    phone.page.goto(f"{node.url}/ui/studies/{study_id}")
    _wait_shown(phone.page, "section.viewer img")
    phone.screenshot("study-phone")


def test_upload_of_a_folder_shows_progress_and_summary(
    node: NodeProcess, desktop: Browsing, tmp_path: Path
) -> None:
    folder = tmp_path / "exam"
    (folder / "series1").mkdir(parents=True)
    spec = SeriesSpec(patient=11, study=1, series=1, count=3, size=128)
    for index in range(3):
        (folder / "series1" / f"IM{index}.dcm").write_bytes(p10(make_instance(spec, index)))
    (folder / "notes.txt").write_text("not a DICOM file\n")
    again = tmp_path / "IM0-again.dcm"
    shutil.copy(folder / "series1" / "IM0.dcm", again)

    desktop.expected.append("/ui/upload")  # the text file is refused: a 400 for it
    page = desktop.page
    page.goto(f"{node.url}/ui/upload")
    page.set_input_files('[data-role="folder"]', str(folder))
    page.wait_for_selector('[data-role="summary"][data-done="yes"]')
    assert page.locator('[data-role="stored"]').inner_text() == "3 stored"
    assert page.locator('[data-role="refused"]').inner_text() == "1 refused"
    assert "notes.txt" in page.locator('[data-role="refusals"]').inner_text()
    # A file sent again is reported as already stored.
    page.set_input_files('[data-role="files"]', str(again))
    page.wait_for_function("() => document.querySelectorAll('table.files tbody tr').length == 5")
    page.wait_for_selector('[data-role="summary"][data-done="yes"]')
    assert page.locator('[data-role="duplicate"]').inner_text() == "1 already stored"
    bars = page.locator("table.files progress")
    assert all(float(bars.nth(i).get_attribute("value")) == 100 for i in range(5))
    desktop.screenshot("upload")
    assert len(node.request("GET", "/instances").json()) == 3


def test_sync_from_the_peers_page_runs_as_a_job(
    tmp_path: Path, desktop: Browsing, phone: Browsing
) -> None:
    site_a, site_b = linked_sites(tmp_path)
    # The user is on site A (the one that dials B); B is open on loopback without users.
    site_a.config.write_text(site_a.config.read_text() + users_toml())
    site_a.credentials = (USER, PASSWORD)
    site_a.start()
    site_b.start()
    try:
        store(site_a, SeriesSpec(patient=21, study=1, series=1, count=4, size=64))
        page = desktop.page
        page.goto(f"{site_a.url}/ui/peers")
        assert page.locator("#peer-siteb h2").inner_text().startswith("siteb")
        page.click("#peer-siteb button:has-text('Sync now')")
        page.wait_for_url(re.compile(r"/ui/jobs"))
        assert "Sync with siteb started" in page.locator(".flash").inner_text()
        # The jobs page refreshes itself while a job runs.
        page.wait_for_selector('tr[data-state="Success"]:has-text("PeerSync")')
        desktop.screenshot("jobs")
        assert len(site_b.request("GET", "/instances").json()) == 4

        page.goto(f"{site_a.url}/ui/peers")
        recent = page.locator("#peer-siteb table tbody tr")
        assert recent.count() == 1 and "Success" in recent.first.inner_text()
        assert "never" not in page.locator("#peer-siteb dl").inner_text().split("Last error")[0]
        desktop.screenshot("peers")
        phone.page.goto(f"{site_a.url}/ui/peers")
        phone.screenshot("peers-phone")
        phone.page.goto(f"{site_a.url}/ui/system")
        assert phone.page.locator('[data-role="identity"]').inner_text().strip()
        phone.screenshot("system-phone")
        page.goto(f"{site_a.url}/ui/system")
        desktop.screenshot("system")
    finally:
        site_a.stop()
        site_b.stop()


def test_delete_removes_the_study(node: NodeProcess, desktop: Browsing) -> None:
    store(node, SeriesSpec(patient=31, study=1, series=1, count=2, size=64))
    store(node, SeriesSpec(patient=32, study=1, series=1, count=2, size=64))
    page = desktop.page
    page.goto(f"{node.url}/ui/studies?patient_id=PAT00031")
    page.locator("table.studies tbody tr a").first.click()
    page.click("text=Delete…")
    confirmation = page.locator(".confirm").inner_text()
    assert "Synthetic, Patient31" in confirmation and "2 images" in confirmation
    desktop.screenshot("delete-confirm")
    page.click("button:has-text('Delete the study')")
    page.wait_for_url(re.compile(r"/ui/studies$"))
    assert "Deleted the study of Synthetic, Patient31" in page.locator(".flash").inner_text()
    assert page.locator("#count").inner_text().strip() == "1 studies"
    assert "Patient31" not in page.locator("table.studies").inner_text()
    desktop.screenshot("after-delete")
    remaining = [node.request("GET", f"/studies/{s}").json() for s in _studies(node)]
    assert [s["PatientMainDicomTags"]["PatientID"] for s in remaining] == ["PAT00032"]
    deletions = events_of(node, "delete", lambda event: "web UI" in event["outcome"])
    assert deletions and deletions[-1]["user"] == USER


def test_pages_read_without_javascript(node: NodeProcess, browser: Any) -> None:
    store(node, SeriesSpec(patient=41, study=1, series=1, count=3, size=128))
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport=DESKTOP,
        java_script_enabled=False,
    )
    try:
        page = context.new_page()
        page.goto(f"{node.url}/ui/studies?name=patient41")
        page.locator("table.studies tbody tr a").first.click()
        page.wait_for_url(re.compile(r"/ui/studies/[0-9a-f-]+$"))
        # The viewer's controls are links and a GET form: the next image, then a window.
        page.click('[data-role="next"]')
        page.wait_for_url(re.compile(r"n=2"))
        assert page.locator('[data-role="position-label"]').inner_text() == "2 / 3"
        page.fill('[data-role="wc"]', "40")
        page.fill('[data-role="ww"]', "400")
        page.click('[data-role="show"]')
        page.wait_for_url(re.compile(r"wc=40&ww=400"))
        image = page.locator("section.viewer img")
        assert "window=40,400" in image.get_attribute("src")
        assert page.evaluate(
            "(img) => img.complete && img.naturalWidth > 0", image.element_handle()
        )
        for path in ("/ui/peers", "/ui/jobs", "/ui/system"):
            page.goto(f"{node.url}{path}")
            assert page.locator("h1").count() == 1
    finally:
        context.close()
