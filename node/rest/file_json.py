"""``/instances/{id}/file`` asked for as ``application/dicom+json``: the instance's DICOM JSON.

What the file holds, in PS3.18 Annex F form: the stored metadata object without
what pacsnode adds to it (Available Transfer Syntax UID, kept there for the
archive's sake), values over 1 KiB as ``BulkDataURI`` references resolved
against the instance's study in the DICOMweb service (small binary values are
inline, as stored).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node.dicomweb.metadata import absolute_bulk_uris
from pacsnode.node.dicomweb.paths import study_url
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.storage.convert import AVAILABLE_TRANSFER_SYNTAX_KEY

DICOM_JSON = "application/dicom+json"


def wants_dicom_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() == DICOM_JSON for part in accept.split(","))


async def file_as_json(request: web.Request) -> web.Response:
    core = core_of(request)
    ref = await blocking(core.instance_ref, request.match_info["id"])
    metadata = await blocking(core.instance_json, ref)
    return web.json_response(file_json(metadata, study_url(request, ref.study_uid)),
                             content_type=DICOM_JSON)  # fmt: skip


def file_json(metadata: dict[str, Any], study: str) -> dict[str, Any]:
    shown = absolute_bulk_uris(metadata, study)
    shown.pop(AVAILABLE_TRANSFER_SYNTAX_KEY, None)
    return shown
