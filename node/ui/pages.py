"""The UI's handlers: each reads what its page shows (off the event loop) and renders it,
or checks a form and does what it asks, then redirects to a page saying what happened."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from typing import Any

from aiohttp import web

from pacsnode.node import audit
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.ids import Level
from pacsnode.node.jobs import JobContext, JobState
from pacsnode.node.rest.context import CONFIG, CORE, JOBS, REGISTRY, REPLICATOR, USER, blocking
from pacsnode.node.rest.system import VERSION
from pacsnode.node.ui import BASE_PATH, csrf, listing, views
from pacsnode.node.ui.render import LISTINGS, STATIC, page, redirect, render, viewer_installed

#: asset types by suffix (not the platform's mime.types, which may lack some)
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


async def _form(request: web.Request) -> dict[str, str]:
    """A POSTed form's fields, once its CSRF token is checked."""
    form = await request.post()
    fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    csrf.check(request, fields.get(csrf.FIELD))
    return fields


# --- studies -----------------------------------------------------------------------------


@page
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{BASE_PATH}studies")


@page
async def studies(request: web.Request) -> web.StreamResponse:
    search = listing.parse_search(request.query)
    try:
        found = await blocking(
            views.search_studies, request.app[CORE], search, request.app[LISTINGS]
        )
        error = None
    except listing.FormError as exc:
        found, error = views.StudyPage([], 0, 0), str(exc)
    context = {
        "search": search,
        "found": found,
        "pages": listing.page_count(found.total, search.size),
        "page_sizes": listing.PAGE_SIZES,
        "modalities": _MODALITIES,
        "search_error": error,
        "query": _query_without(request.query, "page", "sort", "dir"),
    }
    return render(request, "studies.html", context)


#: the modality choices the search form offers (any other value can be typed in the URL)
_MODALITIES = ("CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "RF", "OT", "SR", "SC")


def _query_without(query: Any, *names: str) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in query.items() if k not in names and v])


@page
async def study(request: web.Request) -> web.StreamResponse:
    study_id = request.match_info["id"]
    detail = await blocking(views.study_detail, request.app[CORE], request.app[REGISTRY], study_id)
    chosen = _chosen_series(detail, request.query.get("series"))
    count = len(chosen.items) if chosen else 0
    position = min(max(listing_int(request.query.get("n"), 1), 1), max(count, 1))
    context = {
        "study": detail,
        "chosen": chosen,
        "position": position,
        "window": _window(request.query),
        "zoom": listing_int(request.query.get("zoom"), 100),
        "viewer_installed": viewer_installed(request),
        "dicomweb": request.app[CONFIG].dicomweb.root.rstrip("/"),
    }
    return render(request, "study.html", context)


def listing_int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _window(query: Any) -> tuple[str, str]:
    """The window centre and width asked (as typed, numbers only), or empty: the
    instance's own window."""
    centre, width = query.get("wc", ""), query.get("ww", "")
    try:
        float(centre), float(width)
    except ValueError:
        return "", ""
    return centre, width


def _chosen_series(detail: views.StudyDetail, series_id: str | None) -> views.SeriesItem | None:
    for series in detail.series:
        if series.id == series_id:
            return series
    return detail.series[0] if detail.series else None


@page
async def confirm_delete(request: web.Request) -> web.StreamResponse:
    study_id = request.match_info["id"]
    detail = await blocking(views.study_detail, request.app[CORE], request.app[REGISTRY], study_id)
    return render(request, "delete.html", {"study": detail})


@page
async def delete_study(request: web.Request) -> web.StreamResponse:
    study_id = request.match_info["id"]
    form = await _form(request)
    core = request.app[CORE]
    record = await blocking(core.resource, study_id, Level.STUDY)
    if form.get("confirm") != "yes":
        raise BadRequest("the deletion was not confirmed")
    removed = await blocking(core.delete, study_id)
    audit.deleted(
        request.get(USER), request.remote, Level.STUDY.value, study_id,
        f"deleted {len(removed.resources)} resources (web UI)",
    )  # fmt: skip
    tags = {**record.get("patient_tags", {}), **record["tags"]}
    name = listing.person_name(tags.get("PatientName", ""))
    what = f"{name} {listing.dicom_date(tags.get('StudyDate', ''))}".strip()
    return redirect(request, f"{BASE_PATH}studies", f"Deleted the study of {what}.")


@page
async def protect_study(request: web.Request) -> web.StreamResponse:
    study_id = request.match_info["id"]
    form = await _form(request)
    core = request.app[CORE]
    record = await blocking(core.resource, study_id, Level.STUDY)
    protected = form.get("protected") == "1"
    await blocking(core.annotations.set_protected, record["parent"], protected)
    message = (
        "The patient is protected: recycling will not remove their studies."
        if protected
        else "The patient is no longer protected from recycling."
    )
    return redirect(request, f"{BASE_PATH}studies/{study_id}", message)


@page
async def send_study(request: web.Request) -> web.StreamResponse:
    study_id = request.match_info["id"]
    form = await _form(request)
    kind, _, name = form.get("target", "").partition(":")
    if kind == "peer":
        replicator = request.app[REPLICATOR].current
        if replicator is None:
            raise NotFound("no peer is configured")
        job = await blocking(replicator.store, name, [study_id])
    elif kind == "modality":
        job = await blocking(_send_to_modality, request, name, study_id)
    else:
        raise BadRequest("choose a peer or a modality to send the study to")
    return redirect(request, f"{BASE_PATH}jobs#job-{job.id}", f"Sending the study to {name}.")


def _send_to_modality(request: web.Request, name: str, study_id: str) -> Any:
    """C-STORE the study to a modality as a job (as ``/modalities/{name}/store`` does)."""
    from pacsnode.node.dicom import scu

    modality = request.app[REGISTRY].modality(name)
    core, aet = request.app[CORE], request.app[CONFIG].dicom.aet
    chosen = core.instances_of([study_id])

    def work(context: JobContext) -> dict[str, Any]:
        sent = scu.send(core, aet, modality, chosen, context)
        core.log_exports([study_id], modality.name)
        return sent

    return request.app[JOBS].submit(
        "DicomModalityStore", {"Modality": modality.name, "Resources": [study_id]}, work
    )


@page
async def instance(request: web.Request) -> web.StreamResponse:
    record, nodes = await blocking(views.instance_tags, request.app[CORE], request.match_info["id"])
    study = await blocking(request.app[CORE].ancestors, record)
    context = {"instance": record, "nodes": nodes, "study_id": study[1]["id"] if study else ""}
    return render(request, "instance.html", context)


# --- upload ------------------------------------------------------------------------------


@page
async def upload_page(request: web.Request) -> web.StreamResponse:
    return render(request, "upload.html", {})


async def upload(request: web.Request) -> web.StreamResponse:
    """One file (a DICOM file or a ZIP) from the upload page, through the REST API's own
    ``POST /instances``; a script's request, so its answer stays JSON for the script."""
    from pacsnode.node.rest.upload import post_instances

    try:
        csrf.check(request, None)
    except csrf.CsrfRefused as exc:
        return web.json_response({"Message": str(exc)}, status=403)
    return await post_instances(request)


# --- peers, jobs, system -----------------------------------------------------------------


@page
async def peers(request: web.Request) -> web.StreamResponse:
    rows = await blocking(views.peer_rows, request.app[CORE], request.app[REGISTRY],
                          request.app[REPLICATOR].current, request.app[JOBS])  # fmt: skip
    return render(request, "peers.html", {"peers": rows})


@page
async def sync_peer(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    await _form(request)
    replicator = request.app[REPLICATOR].current
    if replicator is None:
        raise NotFound(f"no peer {name}")
    job = await blocking(replicator.sync, name)
    return redirect(request, f"{BASE_PATH}jobs#job-{job.id}", f"Sync with {name} started.")


@page
async def jobs(request: web.Request) -> web.StreamResponse:
    items = views.job_items(request.app[JOBS])
    return render(request, "jobs.html", {"jobs": items})


@page
async def cancel_job(request: web.Request) -> web.StreamResponse:
    await _form(request)
    job = request.app[JOBS].cancel(request.match_info["id"])
    if job.state not in (JobState.PENDING, JobState.RUNNING):
        return redirect(request, f"{BASE_PATH}jobs", "That job had already finished.")
    # A job notices at its next progress report; a short wait shows most as cancelled.
    await asyncio.to_thread(job.finished.wait, 2.0)
    return redirect(request, f"{BASE_PATH}jobs", f"Cancel asked of job {job.type}.")


@page
async def system(request: web.Request) -> web.StreamResponse:
    info = await blocking(views.system_info, request.app[CORE], request.app[CONFIG],
                          request.app[REPLICATOR].current)  # fmt: skip
    info["version"] = VERSION
    info["python"] = platform.python_version()
    return render(request, "system.html", {"system": info})


# --- assets and the rest -------------------------------------------------------------------


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        raise web.HTTPNotFound()
    # Not secret, and the URL carries a digest of the content: cache it.
    return web.FileResponse(
        Path(path),
        headers={
            "Content-Type": _STATIC_TYPES.get(path.suffix, "application/octet-stream"),
            "Cache-Control": "max-age=604800",
        },
    )


@page
async def not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("there is no such page")
