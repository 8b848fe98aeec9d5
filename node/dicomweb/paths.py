"""Reading a DICOMweb path: UIDs (validated before they reach the index or the store),
frame lists, and the base URL answers point back to."""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.ids import Level
from pacsnode.node.index import InstanceRef
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.storage.layout import is_valid_uid

_NAMES = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}
_MAX_FRAMES_PER_REQUEST = 10_000


def uid(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not is_valid_uid(value):
        raise BadRequest(f"{_NAMES[name]} {value[:80]!r} is not a valid DICOM UID")
    return value


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(request: web.Request) -> str:
    """``scheme://host:port`` as the client reached the node: a reverse proxy's
    ``X-Forwarded-Host``/``-Proto`` when it sends them, else the ``Host`` header, given the
    port the connection came in on when a client leaves it out (dicomweb-client does)."""
    forwarded_host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if forwarded_host:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        return f"{scheme}://{forwarded_host}"
    host = request.host
    if ":" not in host.rsplit("]", 1)[-1] and request.transport is not None:
        sockname = request.transport.get_extra_info("sockname")
        port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
        if port and port != _DEFAULT_PORTS.get(request.scheme):
            host = f"{host}:{port}"
    return f"{request.scheme}://{host}"


def service_url(request: web.Request) -> str:
    """``scheme://host:port/dicom-web``, the base of every URL an answer carries."""
    return f"{_origin(request)}{request.app[CONFIG].dicomweb.root}"


def study_url(request: web.Request, study_uid: str) -> str:
    return f"{service_url(request)}/studies/{study_uid}"


def frame_numbers(text: str) -> list[int]:
    """``1,3,5`` (PS3.18: a comma-separated list of frame numbers, from 1)."""
    numbers = []
    for item in text.replace("%2C", ",").replace("%2c", ",").split(","):
        try:
            number = int(item.strip())
        except ValueError:
            raise BadRequest(f"frame list {text[:80]!r}: {item!r} is not a number") from None
        if number < 1:
            raise BadRequest("frame numbers start at 1")
        numbers.append(number)
    if not numbers or len(numbers) > _MAX_FRAMES_PER_REQUEST:
        raise BadRequest(f"ask for 1 to {_MAX_FRAMES_PER_REQUEST} frames")
    return numbers


def _refs(core: NodeCore, study: str, series: str | None, sop: str | None) -> list[InstanceRef]:
    if sop is not None:
        refs = core.refs_by_uid(Level.INSTANCE, sop)
    elif series is not None:
        refs = core.refs_by_uid(Level.SERIES, series)
    else:
        refs = core.refs_by_uid(Level.STUDY, study)
    return [
        ref
        for ref in refs
        if ref.study_uid == study and (series is None or ref.series_uid == series)
    ]


async def instance_refs(request: web.Request) -> list[InstanceRef]:
    """The instances the path names (a study, a series or one instance); 404 if none."""
    info = request.match_info
    study = uid(request, "study")
    series = uid(request, "series") if "series" in info else None
    sop = uid(request, "instance") if "instance" in info else None
    refs = await blocking(_refs, core_of(request), study, series, sop)
    if not refs:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"no {what} {sop or series or study}")
    return refs
