"""The ``dicom`` attachment of an instance, as Orthanc shows it: the DICOM file.

pacsnode keeps no file as it arrived (the study ZIP is the truth and P10 is
regenerated from it), so this attachment is the regenerated file: read-only, its
size and MD5 those of what ``/file`` serves, "not compressed" (the ZIP's own
compression is storage's business). Routes here are registered before the
generic attachment routes, so ``dicom`` is answered here.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from pacsnode.node.errors import ReadOnlyMetadata
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.node.revisions import Revision

#: Orthanc's content type number of the DICOM file attachment
DICOM_CONTENT_TYPE = 1
_OPERATIONS = ["compressed-data", "compressed-md5", "compressed-size", "data", "is-compressed",
               "md5", "size", "verify-md5"]  # fmt: skip


async def _file(request: web.Request) -> bytes:
    core = core_of(request)
    ref = await blocking(core.instance_ref, request.match_info["id"])
    return await blocking(core.instance_p10, ref)


async def operations(request: web.Request) -> web.Response:
    data = await _file(request)
    revision = Revision(0, hashlib.md5(data).hexdigest())
    response = web.json_response(_OPERATIONS)
    response.headers["ETag"] = revision.etag
    return response


async def detail(request: web.Request) -> web.Response:
    data = await _file(request)
    what = request.match_info["what"]
    if what in ("data", "compressed-data"):
        return web.Response(body=data, content_type="application/dicom")
    md5 = hashlib.md5(data).hexdigest()  # not compressed: both views are the file
    values = {
        "size": str(len(data)),
        "compressed-size": str(len(data)),
        "md5": md5,
        "compressed-md5": md5,
        "is-compressed": "0",
    }
    return web.Response(text=values[what], content_type="text/plain")


async def verify(request: web.Request) -> web.Response:
    await _file(request)  # regenerating it reads and checks every stored entry's CRC
    return web.json_response({})


async def read_only(request: web.Request) -> web.Response:
    raise ReadOnlyMetadata("the dicom attachment is the instance itself: it cannot be changed")


def setup_routes(app: web.Application) -> None:
    base = "/instances/{id}/attachments/dicom"
    what = "{what:data|compressed-data|size|md5|compressed-size|compressed-md5|is-compressed}"
    app.router.add_get(base, operations)
    app.router.add_put(base, read_only)
    app.router.add_delete(base, read_only)
    app.router.add_get(f"{base}/{what}", detail)
    app.router.add_post(f"{base}/verify-md5", verify)
