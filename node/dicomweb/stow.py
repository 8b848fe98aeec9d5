"""STOW-RS (PS3.18 10.5): ``multipart/related; type="application/dicom"`` bodies in.

Each part is spooled to a temporary file as it arrives (a large study is never held in
memory) and goes through the node's one ingest path, so a stored instance is durable
before the answer lists it. The answer (``ReferencedSOPSequence``, ``FailedSOPSequence``)
is built by :func:`stow_answer`, a pure function.
"""

from __future__ import annotations

import io
import json
import mmap
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

from aiohttp import web
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from pacsnode.node.core import NodeCore
from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.dicomweb.negotiation import DICOM, DICOM_JSON, accepts_json, parse_accept
from pacsnode.node.dicomweb.paths import service_url, uid
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.index import Origin
from pacsnode.node.rest.context import blocking, core_of, rest_origin
from pacsnode.node.rest.limits import check_declared_size, too_large
from pacsnode.storage.durable import disk_errors

_CHUNK = 1024 * 1024
#: PS3.4 / PS3.18 failure reasons
PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900  # used too for an instance of another study than the path's


class UnsupportedMediaType(DomainError):
    code = "unsupported-media-type"
    http_status = 415


@dataclass(frozen=True)
class Outcome:
    """One part of the request: what it claimed to be and whether it was stored."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure: int | None = None
    reason: str = ""


def _uid_element(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _url(value: str) -> dict[str, Any]:
    return {"vr": "UR", "Value": [value]}


def _sop_item(outcome: Outcome, extra: dict[str, Any]) -> dict[str, Any]:
    """A Referenced or Failed SOP Sequence item: the instance's UIDs and ``extra``."""
    return {
        "00081150": _uid_element(outcome.sop_class_uid),
        "00081155": _uid_element(outcome.sop_instance_uid),
        **extra,
    }


def _instance_url(base_url: str, outcome: Outcome) -> str:
    return (
        f"{base_url}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
        f"/instances/{outcome.sop_instance_uid}"
    )


def stow_answer(
    outcomes: list[Outcome], base_url: str, study_uid: str | None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Store Instances Response Module) for the parts of one request."""
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    answer: dict[str, Any] = {}
    studies = {o.study_uid for o in stored}
    if study_uid or len(studies) == 1:
        answer["00081190"] = _url(f"{base_url}/studies/{study_uid or studies.pop()}")
    if failed:
        items = [_sop_item(o, {"00081197": {"vr": "US", "Value": [o.failure]}}) for o in failed]
        answer["00081198"] = {"vr": "SQ", "Value": items}
    if stored:
        items = [_sop_item(o, {"00081190": _url(_instance_url(base_url, o))}) for o in stored]
        answer["00081199"] = {"vr": "SQ", "Value": items}
    if not failed:
        return 200, answer
    return (202 if stored else 409), answer


def _identify(handle: IO[bytes]) -> tuple[str, str, str, str]:
    """(SOP class, SOP instance, study, series UIDs) read from the file's header only."""
    handle.seek(0)
    dataset = dcmread(
        handle,
        stop_before_pixels=True,
        specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"],
    )
    handle.seek(0)
    return tuple(  # type: ignore[return-value]
        str(dataset.get(k, ""))
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    )


def _claimed(handle: IO[bytes]) -> Outcome | None:
    try:
        return Outcome(*_identify(handle))
    except (InvalidDicomError, ValueError, EOFError, OSError):
        return None


def store_one(core: NodeCore, handle: IO[bytes], study_uid: str | None, origin: Origin) -> Outcome:
    """Ingest one part. Its header is read on its own only when the path names a study
    (to refuse another study's instance before storing it) or to name a refused part."""
    if study_uid:
        claimed = _claimed(handle)
        if claimed is None:
            return Outcome(failure=CANNOT_UNDERSTAND, reason="not a DICOM file")
        if claimed.study_uid != study_uid:
            reason = f"belongs to study {claimed.study_uid}, not {study_uid}"
            return _failed(claimed, DOES_NOT_MATCH, reason)
    try:
        result = core.ingest(handle, origin)
    except DomainError as exc:
        refused = _claimed(handle) or Outcome()
        return _failed(refused, exc.dimse_status or PROCESSING_FAILURE, exc.message)
    stored = result.instance
    sop_class = stored.metadata.get("00080016", {}).get("Value") or [""]
    outcome = Outcome(str(sop_class[0]), stored.sop_uid, stored.study_uid, stored.series_uid)
    if result.conflict:
        return _failed(outcome, DOES_NOT_MATCH, "another instance with this UID is stored")
    return outcome


def _failed(claimed: Outcome, failure: int, reason: str) -> Outcome:
    return replace(claimed, failure=failure, reason=reason)


def _check_request_type(request: web.Request) -> None:
    if request.content_type != "multipart/related":
        raise UnsupportedMediaType(
            f'send multipart/related; type="{DICOM}" (got {request.content_type or "nothing"})'
        )
    declared = ""
    for field in request.headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = field.partition("=")
        if name.strip().lower() == "type":
            declared = value.strip().strip('"').lower()
    if declared and declared != DICOM:
        raise UnsupportedMediaType(
            f"only {DICOM} parts are accepted (metadata and bulk data STOW is not supported)"
        )


def _boundary(request: web.Request) -> bytes:
    for field in request.headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = field.partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            # No length check: Orthanc sends boundaries longer than RFC 2046's 70 characters.
            return value.strip().strip('"').encode("latin-1")
    raise BadRequest("the multipart body has no boundary parameter")


def split_parts(body: bytes | mmap.mmap, boundary: bytes) -> Iterator[tuple[str, int, int]]:
    """Each part of a multipart body: (its media type, where its content starts, ends)."""
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    while position >= 0:
        after = position + len(delimiter)
        if body[after : after + 2] == b"--":
            return  # the closing delimiter
        head_end = body.find(b"\r\n\r\n", after)
        if head_end < 0:
            raise BadRequest("a multipart part has no end of headers")
        media_type = DICOM
        for line in bytes(body[after:head_end]).split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-type":
                media_type = value.split(";")[0].strip().lower()
        start = head_end + 4
        following = body.find(b"\r\n" + delimiter, start)
        if following < 0:
            raise BadRequest("the multipart body ends before its closing boundary")
        yield media_type, start, following
        position = following + 2


async def _spool(request: web.Request, handle: IO[bytes]) -> int:
    limit = check_declared_size(request)  # [http] max_request_size_mb, as for POST /instances
    size = 0
    with disk_errors("the upload"):  # spooled on the data disk: full is a 507
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:  # a chunked body declares nothing: count as it arrives
                raise too_large(limit)
            await blocking(handle.write, chunk)
    return size


def _store_parts(
    core: NodeCore, handle: IO[bytes], boundary: bytes, study_uid: str | None, origin: Origin
) -> list[Outcome]:
    # One part after another: storing parts of one study in parallel measured no faster
    # (the store serialises writes to a study, and parsing holds the GIL).
    handle.flush()
    outcomes = []
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as body:
        for media_type, start, end in split_parts(body, boundary):
            if media_type != DICOM:
                outcomes.append(Outcome(failure=CANNOT_UNDERSTAND, reason=f"a {media_type} part"))
            elif start == end:
                outcomes.append(Outcome(failure=CANNOT_UNDERSTAND, reason="an empty part"))
            else:
                outcomes.append(store_one(core, io.BytesIO(body[start:end]), study_uid, origin))
    return outcomes


async def store(request: web.Request) -> web.Response:
    if not accepts_json(parse_accept(request.headers.get("Accept"))):
        raise NotAcceptable(f"the STOW-RS answer is sent as {DICOM_JSON} only")
    study_uid = uid(request, "study") if "study" in request.match_info else None
    _check_request_type(request)
    boundary = _boundary(request)
    core = core_of(request)
    origin = rest_origin(request)
    # The body goes to disk as it arrives and is read back one part at a time: a large
    # study is never held in memory, only the instance being stored.
    with tempfile.TemporaryFile(dir=core.settings.data_dir) as handle:
        if await _spool(request, handle) == 0:
            raise BadRequest("the request body is empty")
        outcomes = await blocking(_store_parts, core, handle, boundary, study_uid, origin)
    if not outcomes:
        raise BadRequest("the request holds no parts: send one DICOM instance per part")
    status, answer = stow_answer(outcomes, service_url(request), study_uid)
    return web.Response(
        status=status,
        body=json.dumps(answer, separators=(",", ":")).encode(),
        headers={"Content-Type": DICOM_JSON},
    )


def setup_routes(app: web.Application, root: str) -> None:
    app.router.add_post(root + "/studies", store)
    app.router.add_post(root + "/studies/{study}", store)
