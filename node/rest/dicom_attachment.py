"""The ``dicom`` attachment of an instance, as Orthanc shows it: the DICOM file.

The study ZIP is the truth; the file is given back from it exactly as it came
when its P10 layout was kept (see ``storage/fidelity.py``), else regenerated.
Its size and MD5 are those of what ``/file`` serves, and its ETag is
``"0-{md5}"`` as Orthanc has it (the file never changes: revision 0).

Compression is the archive's, not the attachment's: frames and bulk data are
deflated in the ZIP when that helps, as the node's configuration says, so the
compressed size is the instance's share of the ZIP and ``is-compressed`` says
whether that is smaller than the file. There is no separate compressed blob:
``compressed-data`` is the file, and ``compress``/``uncompress`` are refused.
Routes here are registered before the generic attachment routes, so ``dicom`` is
answered here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from pacsnode.node.errors import BadRequest, ReadOnlyMetadata
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.node.revisions import Revision, unchanged

#: Orthanc's content type number of the DICOM file attachment
DICOM_CONTENT_TYPE = 1
_OPERATIONS = ["compressed-data", "compressed-md5", "compressed-size", "data", "info",
               "is-compressed", "md5", "size", "verify-md5"]  # fmt: skip


@dataclass(frozen=True)
class _DicomFile:
    data: bytes
    stored_size: int
    uuid: str

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def revision(self) -> Revision:
        return Revision(0, self.md5)

    @property
    def is_compressed(self) -> bool:
        return self.stored_size < len(self.data)

    @property
    def compressed_size(self) -> int:
        return self.stored_size if self.is_compressed else len(self.data)


async def _file(request: web.Request) -> _DicomFile:
    core = core_of(request)
    instance_id = request.match_info["id"]
    await blocking(core.sizes_settled)  # its stored size, once converted
    record = await blocking(core.resource, instance_id, Level.INSTANCE)
    ref = await blocking(core.instance_ref, instance_id)
    data = await blocking(core.instance_p10, ref)
    return _DicomFile(data, int(record["size"]), str(record["digest"]))


def _with_etag(response: web.Response, revision: Revision) -> web.Response:
    response.headers["ETag"] = revision.etag
    return response


def _not_modified(request: web.Request, revision: Revision) -> web.Response | None:
    # an If-None-Match that is not a revision at all is a 400 (parse_etag)
    if unchanged(revision, request.headers.get("If-None-Match")):
        return _with_etag(web.Response(status=304), revision)
    return None


async def operations(request: web.Request) -> web.Response:
    dicom = await _file(request)
    return _not_modified(request, dicom.revision) or _with_etag(
        web.json_response(_OPERATIONS), dicom.revision
    )


async def detail(request: web.Request) -> web.Response:
    dicom = await _file(request)
    if (not_modified := _not_modified(request, dicom.revision)) is not None:
        return not_modified
    what = request.match_info["what"]
    if what in ("data", "compressed-data"):
        response = web.Response(body=dicom.data, content_type="application/dicom")
        return _with_etag(response, dicom.revision)
    if what == "info":
        return _with_etag(web.json_response(_info(dicom)), dicom.revision)
    values = {
        "size": str(len(dicom.data)),
        "compressed-size": str(dicom.compressed_size),
        "md5": dicom.md5,
        "compressed-md5": dicom.md5,  # compressed-data is the file (see the docstring)
        "is-compressed": "1" if dicom.is_compressed else "0",
    }
    return _with_etag(web.Response(text=values[what], content_type="text/plain"), dicom.revision)


def _info(dicom: _DicomFile) -> dict[str, object]:
    return {
        "Uuid": dicom.uuid,  # as the instance's FileUuid
        "ContentType": DICOM_CONTENT_TYPE,
        "UncompressedSize": len(dicom.data),
        "UncompressedMD5": dicom.md5,
        "CompressedSize": dicom.compressed_size,
        "CompressedMD5": dicom.md5,
        "Revision": 0,
    }


async def verify(request: web.Request) -> web.Response:
    await _file(request)  # giving it back reads and checks every stored entry's CRC
    return web.json_response({})


async def no_compression_change(request: web.Request) -> web.Response:
    raise BadRequest(
        "the dicom attachment is compressed as the archive is (storage.compression); "
        "it cannot be compressed or uncompressed on its own"
    )


async def read_only(request: web.Request) -> web.Response:
    raise ReadOnlyMetadata("the dicom attachment is the instance itself: it cannot be changed")


def setup_routes(app: web.Application) -> None:
    base = "/instances/{id}/attachments/dicom"
    what = "{what:data|compressed-data|size|md5|compressed-size|compressed-md5|is-compressed|info}"
    app.router.add_get(base, operations)
    app.router.add_put(base, read_only)
    app.router.add_delete(base, read_only)
    app.router.add_get(f"{base}/{what}", detail)
    app.router.add_post(f"{base}/verify-md5", verify)
    app.router.add_post(f"{base}/{{op:compress|uncompress}}", no_compression_change)
