"""The UI's pages in-process, over a real core: headers, authentication, CSRF checks,
errors as pages, paging and sorting, the actions; and no template engine at start."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pacsnode.node.auth import hash_password
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.jobs import JobContext, JobState
from pacsnode.node.rest.app import create_app
from pacsnode.node.rest.context import JOBS
from pacsnode.node.settings import Modality, User
from tests.node.rest.conftest import node_config
from tests.node.server import REPO, free_port
from tests.storage.helpers import ct_bytes

_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
async def ui(make_core: Any, aiohttp_client: Any, tmp_path: Path) -> tuple[TestClient, NodeCore]:
    config = node_config(tmp_path / "data")
    core = make_core(data_dir=config.core.data_dir)
    return await aiohttp_client(create_app(core, config)), core


async def _page(client: TestClient, path: str, status: int = 200) -> str:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    return await response.text()


async def _token(client: TestClient, path: str) -> str:
    match = _TOKEN.search(await _page(client, path))
    assert match is not None
    return match.group(1)


async def test_every_page_is_html_and_not_kept(ui: tuple[TestClient, NodeCore]) -> None:
    client, core = ui
    core.ingest(ct_bytes(0))
    (study,) = core.list_ids(Level.STUDY)
    (instance,) = core.list_ids(Level.INSTANCE)
    response = await client.get("/ui", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/ui/studies"
    for path in ("/ui/studies", f"/ui/studies/{study}", f"/ui/studies/{study}/delete",
                 f"/ui/instances/{instance}", "/ui/upload", "/ui/peers", "/ui/jobs",
                 "/ui/system"):  # fmt: skip
        text = await _page(client, path)
        assert "Traceback" not in text and "<h1>" in text
    assert "Synthetic, Patient1" in await _page(client, "/ui/studies")
    static = await client.get("/ui/static/ui.js")
    assert static.status == 200 and static.content_type == "text/javascript"


async def test_errors_are_pages_not_json(ui: tuple[TestClient, NodeCore]) -> None:
    client, _ = ui
    text = await _page(client, "/ui/studies/0000-no-such-study", 404)
    assert "no study" in text and "{" not in text.split("<main>")[1]
    assert "there is no such page" in await _page(client, "/ui/no/such/page", 404)
    text = await _page(client, "/ui/studies?date_from=tomorrow")
    assert "write the date as YYYY-MM-DD" in text
    assert (await client.get("/ui/static/../render.py")).status == 404


async def test_posts_need_the_sessions_token(ui: tuple[TestClient, NodeCore]) -> None:
    client, core = ui
    core.ingest(ct_bytes(0))
    (study,) = core.list_ids(Level.STUDY)
    (patient,) = core.list_ids(Level.PATIENT)
    protect = f"/ui/studies/{study}/protect"

    # A form without the token (as another site would post it) is refused, and says why.
    response = await client.post(protect, data={"protected": "1", "csrf": "guess"})
    assert response.status == 403 and "did not come from this node" in await response.text()
    assert not core.annotations.is_protected(patient)

    token = await _token(client, f"/ui/studies/{study}")  # sets the session's cookie
    foreign = await client.post(
        protect,
        data={"protected": "1", "csrf": token},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert foreign.status == 403 and "another site" in await foreign.text()
    assert not core.annotations.is_protected(patient)

    done = await client.post(protect, data={"protected": "1", "csrf": token})
    assert done.status == 200 and "is protected" in await done.text()  # redirected, told
    assert core.annotations.is_protected(patient)
    assert "protected" in await _page(client, "/ui/system")

    unconfirmed = await client.post(f"/ui/studies/{study}/delete", data={"csrf": token})
    assert unconfirmed.status == 400 and core.exists(study)
    deleted = await client.post(
        f"/ui/studies/{study}/delete", data={"csrf": token, "confirm": "yes"}
    )
    assert deleted.status == 200 and "Deleted the study of Synthetic, Patient1" in (
        await deleted.text()
    )
    assert not core.exists(study)


async def test_upload_answers_each_file(ui: tuple[TestClient, NodeCore]) -> None:
    client, core = ui
    refused = await client.post("/ui/upload", data=ct_bytes(0))
    assert refused.status == 403 and not core.list_ids(Level.INSTANCE)
    token = await _token(client, "/ui/jobs")
    headers = {"X-CSRF-Token": token, "Content-Type": "application/octet-stream"}
    stored = await client.post("/ui/upload", data=ct_bytes(0), headers=headers)
    assert (await stored.json())["Status"] == "Success"
    again = await client.post("/ui/upload", data=ct_bytes(0), headers=headers)
    assert (await again.json())["Status"] == "AlreadyStored"
    bad = await client.post("/ui/upload", data=b"hello", headers=headers)
    assert bad.status == 400 and "not a DICOM file" in (await bad.json())["Message"]


async def test_studies_are_paged_and_sorted(ui: tuple[TestClient, NodeCore]) -> None:
    client, core = ui
    for patient in range(1, 61):
        core.ingest(ct_bytes(0, patient=patient, study=patient % 12))
    first = await _page(client, "/ui/studies")
    assert "60 studies · page 1 of 2" in " ".join(first.split())
    assert first.count('data-label="Patient"><a') == 50
    second = await _page(client, "/ui/studies?page=2")
    assert second.count('data-label="Patient"><a') == 10
    by_id = await _page(client, "/ui/studies?sort=id&dir=asc&size=25")
    ids = re.findall(r'data-label="Patient ID">(PAT\d+)<', by_id)
    assert ids == [f"PAT{n:05d}" for n in range(1, 26)]
    newest = await _page(client, "/ui/studies?sort=date")
    dates = re.findall(r'data-label="Date">([\d-]+)<', newest)
    assert dates == sorted(dates, reverse=True) and dates[0] == "2026-12-15"
    found = await _page(client, "/ui/studies?patient_id=PAT00042")
    assert "1 of 60 studies match" in found and "PAT00042" in found
    assert "1 of 60 studies match" in await _page(client, "/ui/studies?patient_id=pat00042")

    # Orders and answers are kept between pages only until the index changes.
    core.ingest(ct_bytes(0, patient=99, study=3))
    assert "61 studies" in await _page(client, "/ui/studies?page=2")
    again = await _page(client, "/ui/studies?patient_id=PAT00099")
    assert "1 of 61 studies match" in again


async def test_basic_auth_covers_the_ui(
    make_core: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    users = (User("operator", hash_password("secret")),)
    config = node_config(tmp_path / "data", users=users)
    client = await aiohttp_client(create_app(make_core(data_dir=config.core.data_dir), config))
    for path in ("/ui/studies", "/ui/static/ui.css", "/ui/system"):
        assert (await client.get(path)).status == 401
    token = base64.b64encode(b"operator:secret").decode()
    answer = await client.get("/ui/studies", headers={"Authorization": f"Basic {token}"})
    assert answer.status == 200


def test_an_idle_node_has_no_template_engine_loaded(tmp_path: Path) -> None:
    """Jinja2 costs about 1.2 MB of RSS; the app imports it on its first page only."""
    script = (
        "import sys, dataclasses, pathlib\n"
        "from pacsnode.node.config import load_config\n"
        "from pacsnode.node.core import NodeCore\n"
        "from pacsnode.node.rest.app import create_app\n"
        "from pacsnode.node.settings import CoreSettings\n"
        f"settings = CoreSettings(data_dir=pathlib.Path({str(tmp_path)!r}))\n"
        "config = dataclasses.replace(load_config(), core=settings)\n"
        "core = NodeCore(settings); core.open(background=False)\n"
        "create_app(core, config); core.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jinja2', 'aiohttp_jinja2')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


async def test_a_running_job_shows_live_and_can_be_cancelled(
    ui: tuple[TestClient, NodeCore],
) -> None:
    client, _ = ui
    stop = threading.Event()

    def work(context: JobContext) -> dict[str, Any]:
        while not stop.wait(0.02):
            context.progress(3, 10, Phase="copying")
        return {}

    job = client.server.app[JOBS].submit("Example", {"Peer": "siteb"}, work)
    try:
        while job.progress != 30:  # its first report
            await asyncio.sleep(0.01)
        page = await _page(client, "/ui/jobs")
        assert 'data-refresh="1000"' in page  # the script fetches it again while it runs
        assert f'id="job-{job.id}" data-state="Running"' in page and "Phase: copying" in page
        assert '<progress max="100" value="30">' in page
        token = _TOKEN.search(page).group(1)  # type: ignore[union-attr]
        answer = await client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf": token})
        assert answer.status == 200 and "Cancel asked" in await answer.text()
        assert job.state is JobState.CANCELLED
        assert 'data-refresh="0"' in await _page(client, "/ui/jobs")
    finally:
        stop.set()


async def test_send_runs_as_a_job_and_its_failure_shows(
    make_core: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    closed = free_port()  # nothing listens there: the association is refused
    modality = Modality("archive2", "ARCHIVE2", "127.0.0.1", closed)
    config = node_config(tmp_path / "data", modalities=(modality,))
    core = make_core(data_dir=config.core.data_dir)
    client = await aiohttp_client(create_app(core, config))
    core.ingest(ct_bytes(0))
    (study,) = core.list_ids(Level.STUDY)
    page = await _page(client, f"/ui/studies/{study}")
    assert '<option value="modality:archive2">modality archive2</option>' in page
    token = _TOKEN.search(page).group(1)  # type: ignore[union-attr]

    nowhere = await client.post(
        f"/ui/studies/{study}/send", data={"csrf": token, "target": "peer:nope"}
    )
    assert nowhere.status == 404 and "no peer" in await nowhere.text()

    sent = await client.post(
        f"/ui/studies/{study}/send", data={"csrf": token, "target": "modality:archive2"}
    )
    assert sent.status == 200 and "Sending the study to archive2." in await sent.text()
    (job_id,) = client.server.app[JOBS].ids()
    await asyncio.to_thread(client.server.app[JOBS].get(job_id).finished.wait, 30)
    jobs = await _page(client, "/ui/jobs")
    assert f'id="job-{job_id}" data-state="Failure"' in jobs
    assert 'class="error-text"' in jobs and "Traceback" not in jobs
