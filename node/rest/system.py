"""``/changes``, ``/statistics``, ``/system``."""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.node.rest.params import int_param

VERSION = "0.1.0"
API_VERSION = 1


async def changes(request: web.Request) -> web.Response:
    since = int_param(request, "since", 0)
    limit = int_param(request, "limit", 100)
    page = await blocking(core_of(request).changes, since, limit)
    return web.json_response(page.as_json())


async def statistics(request: web.Request) -> web.Response:
    stats = await blocking(core_of(request).statistics)
    mib = 1024 * 1024
    stats["TotalDiskSizeMB"] = stats["TotalDiskSize"] // mib
    stats["TotalUncompressedSizeMB"] = stats["TotalUncompressedSize"] // mib
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
    app.router.add_get("/statistics", statistics)
    app.router.add_get("/system", system)
