"""``POST /instances``: a DICOM file, or a ZIP of DICOM files, in the request body.

The body is spooled to a temporary file as it arrives (large uploads never sit
in memory) and goes through the node's one ingest pipeline.
"""

from __future__ import annotations

import tempfile
import zipfile
from typing import IO, Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.hierarchy import Origin
from pacsnode.node.ids import Level
from pacsnode.node.ingest import IngestResult
from pacsnode.node.rest.context import blocking, core_of

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"


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


def _ingest_zip(core: NodeCore, body: IO[bytes], origin: Origin) -> list[dict[str, Any]]:
    try:
        archive = zipfile.ZipFile(body)
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"the body starts like a ZIP but is not one: {exc}") from exc
    answers: list[dict[str, Any]] = []
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    answers.append(result_json(core.ingest(member.read(), origin)))
            except DomainError as exc:
                answers.append(
                    {
                        "Path": info.filename,
                        "Status": "Failure",
                        "ErrorCode": exc.code,
                        "Message": exc.message,
                    }
                )
    return answers


def _ingest_body(core: NodeCore, body: IO[bytes], origin: Origin) -> Any:
    body.seek(0)
    head = body.read(4)
    body.seek(0)
    if head == _ZIP_MAGIC:
        return _ingest_zip(core, body, origin)
    return result_json(core.ingest(body, origin))


async def post_instances(request: web.Request) -> web.Response:
    core = core_of(request)
    origin = Origin(kind="RestApi", remote_ip=request.remote or "")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
        received = 0
        async for chunk in request.content.iter_chunked(_CHUNK):
            await blocking(body.write, chunk) if received > _SPOOL_IN_MEMORY else body.write(chunk)
            received += len(chunk)
        if received == 0:
            raise BadRequest("the request body is empty: send a DICOM file or a ZIP of them")
        answer = await blocking(_ingest_body, core, body, origin)
    return web.json_response(answer)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/instances", post_instances)
