"""``POST /instances``: a DICOM file, or a ZIP of DICOM files, in the request body.

The body is spooled to a temporary file as it arrives (large uploads never sit
in memory) and goes through the node's one ingest pipeline. The spool is in the data
directory, not the system's temporary one: patient data stays on the data disk, private to
the node; bodies over ``[http] max_request_size_mb`` are refused (413).
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index import Origin
from pacsnode.node.ingest import IngestResult
from pacsnode.node.rest.context import CORE, blocking, core_of, rest_origin
from pacsnode.node.rest.limits import check_declared_size, too_large
from pacsnode.node.uploads import (
    ChunkedUploads,
    FileOutcome,
    form_data_boundary,
    form_data_files,
    ingest_zip,
    is_zip,
)
from pacsnode.storage.durable import disk_errors
from pacsnode.storage.errors import NotDicom

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNKS = web.AppKey("chunked_uploads", ChunkedUploads)
_CHUNK = 1024 * 1024


def result_json(result: IngestResult) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "ID": result.ids[Level.INSTANCE],
        "Path": f"/instances/{result.ids[Level.INSTANCE]}",
        "Status": result.status.value,
        "ParentPatient": result.ids[Level.PATIENT],
        "ParentStudy": result.ids[Level.STUDY],
        "ParentSeries": result.ids[Level.SERIES],
    }
    if result.conflict:
        shown["Conflict"] = True
    return shown


def _failure_json(outcome: FileOutcome) -> dict[str, Any]:
    assert outcome.error is not None
    return {
        "Path": outcome.name,
        "Status": "Failure",
        "ErrorCode": outcome.error.code,
        "Message": outcome.error.message,
    }


def _ingest_body(core: NodeCore, body: IO[bytes], origin: Origin) -> Any:
    if is_zip(body):
        # As Orthanc does, files of a ZIP that are not DICOM at all (a README, a
        # DICOMDIR's companions) are passed over; DICOM files refused are reported.
        return [
            result_json(o.result) if o.result is not None else _failure_json(o)
            for o in ingest_zip(core, body, origin)
            if not isinstance(o.error, NotDicom)
        ]
    return result_json(core.ingest(body, origin))


async def post_instances(request: web.Request) -> web.Response:
    core = core_of(request)
    origin = rest_origin(request)
    limit = check_declared_size(request)
    spool_dir = core.settings.data_dir
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, dir=spool_dir) as body:
        received = 0
        with disk_errors("the upload"):  # spooled on the data disk: full is a 507
            async for chunk in request.content.iter_chunked(_CHUNK):
                if received + len(chunk) > limit:  # a chunked body declares no length
                    raise too_large(limit)
                if received > _SPOOL_IN_MEMORY:
                    await blocking(body.write, chunk)
                else:
                    body.write(chunk)
                received += len(chunk)
        if received == 0:
            raise BadRequest("the request body is empty: send a DICOM file or a ZIP of them")
        boundary = form_data_boundary(request.headers.get("Content-Type", ""))
        piece_of = _chunked_file(request)
        if boundary is not None and piece_of is not None:
            answer = await blocking(_ingest_piece, request.app[_CHUNKS], core, body, boundary,
                                    piece_of, origin)  # fmt: skip
        elif boundary is not None:  # a browser's upload form: each file in its own part
            answer = await blocking(_ingest_form, core, body, boundary, origin)
        else:
            answer = await blocking(_ingest_body, core, body, origin)
    return web.json_response(answer)


def _ingest_form(core: NodeCore, body: IO[bytes], boundary: str, origin: Origin) -> Any:
    body.seek(0)
    answers = []
    for content in form_data_files(body.read(), boundary):
        with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY, dir=core.settings.data_dir) as part:
            with disk_errors("the upload"):
                part.write(content)
            answer = _ingest_body(core, part, origin)
        answers.extend(answer if isinstance(answer, list) else [answer])
    return answers


def _chunked_file(request: web.Request) -> tuple[str, int] | None:
    """(name, whole size) when the request says it carries a piece of a file."""
    name, size = request.headers.get("X-File-Name"), request.headers.get("X-File-Size")
    if not name or not size:
        return None
    try:
        return name, int(size)
    except ValueError:
        raise BadRequest(f"X-File-Size {size!r} is not a number of bytes") from None


def _ingest_piece(
    chunks: ChunkedUploads,
    core: NodeCore,
    body: IO[bytes],
    boundary: str,
    piece_of: tuple[str, int],
    origin: Origin,
) -> Any:
    """One piece of a chunked upload; the file is ingested with its last piece."""
    body.seek(0)
    whole = None
    for content in form_data_files(body.read(), boundary):
        whole = chunks.add(*piece_of, content)
    if whole is None:
        return []  # as Orthanc: nothing stored yet
    with whole:
        answer = _ingest_body(core, whole, origin)
    return answer if isinstance(answer, list) else [answer]


def setup_routes(app: web.Application) -> None:
    app[_CHUNKS] = ChunkedUploads(app[CORE].settings.data_dir)  # spooled with the data
    app.router.add_post("/instances", post_instances)
