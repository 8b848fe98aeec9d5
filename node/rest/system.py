"""``/changes``, ``/exports``, ``/statistics``, ``/system``."""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.index_plugins.loading import SEARCH
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.params import flag_param, int_param

VERSION = "0.1.0"
API_VERSION = 1


def _page_limit(request: web.Request) -> int:
    """``limit`` (100 by default), at most ``[http] max_changes_limit``: one request must
    not make the node read and serialise its whole history at once. A client pages on
    with ``since`` (``Done`` says when it has everything). The index has its own ceiling."""
    return min(int_param(request, "limit", 100), request.app[CONFIG].http.max_changes_limit)


async def changes(request: web.Request) -> web.Response:
    """The change feed after ``since`` (``limit`` entries), or only the newest (``last``).

    As in Orthanc, a deleted resource's changes are gone from it; ``?deleted`` shows the
    node's whole feed, with the deletions (their UIDs and reason) and what they removed.
    """
    core = core_of(request)
    last = flag_param(request, "last")
    since, limit = int_param(request, "since", 0), _page_limit(request)
    if not flag_param(request, "deleted"):
        page = await blocking(core.orthanc_changes, since, limit, last=last)
    elif last:
        page = await blocking(core.last_change_page)
    else:
        page = await blocking(core.changes, since, limit)
    return web.json_response(page.as_json())


async def clear_changes(request: web.Request) -> web.Response:
    """Orthanc's DELETE /changes: forget the feed so far (numbering goes on from there)."""
    await blocking(core_of(request).clear_changes)
    return web.json_response({})


async def exports(request: web.Request) -> web.Response:
    """What was sent to modalities and peers, as a feed like ``/changes``."""
    core = core_of(request)
    if flag_param(request, "last"):
        page = await blocking(core.last_export_page)
    else:
        since = int_param(request, "since", 0)
        page = await blocking(core.exports, since, _page_limit(request))
    return web.json_response(page.as_json("Exports"))


async def clear_exports(request: web.Request) -> web.Response:
    await blocking(core_of(request).clear_exports)
    return web.json_response({})


def statistics_of(core: NodeCore) -> dict[str, object]:
    """Counts and sizes (bytes, as numbers), and how far behind the index plugins are:
    ``SearchIndexLag`` (search on), ``IndexPluginLags`` (every plugin beyond the main tags,
    by name; null for one that cannot say)."""
    stats: dict[str, object] = dict(core.statistics())
    lags = core.index_lags()
    if lags:
        stats["IndexPluginLags"] = lags
    if SEARCH in lags:  # search is on: the changes its answers do not reflect yet
        stats["SearchIndexLag"] = lags[SEARCH]
    return stats


async def statistics(request: web.Request) -> web.Response:
    """Orthanc's shape: sizes in bytes as strings (they may pass 2**53), in MiB as numbers."""
    stats = await blocking(statistics_of, core_of(request))
    mib = 1024 * 1024
    for key in ("TotalDiskSize", "TotalUncompressedSize"):
        size = int(stats[key])  # type: ignore[call-overload]
        stats[key] = str(size)
        stats[f"{key}MB"] = size // mib
    return web.json_response(stats)


async def system(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response(
        {
            "Name": "pacsnode",
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "DicomAet": config.dicom.aet,
            "DicomPort": config.dicom.port,
            "HttpPort": config.http.port,
            "StorageCompression": config.core.compression,
            "MaximumStorageSize": config.core.maximum_storage_size_mb,
            "MaximumPatientCount": config.core.maximum_patient_count,
            "MaximumStorageMode": config.core.maximum_storage_mode.value,
        }
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/changes", changes)
    app.router.add_delete("/changes", clear_changes)
    app.router.add_get("/exports", exports)
    app.router.add_delete("/exports", clear_exports)
    app.router.add_get("/statistics", statistics)
    app.router.add_get("/system", system)
