"""``/modalities``: known DICOM peers, C-ECHO and C-STORE to them (as jobs).

They live in the node's registry (:mod:`pacsnode.node.registry`), seeded from the
configuration and shared with the DICOM server: a modality put here is a C-MOVE
destination and a caller at once. Changes are kept in the index and survive a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pacsnode.node.dicom import scu
from pacsnode.node.errors import BadRequest
from pacsnode.node.jobs import JobContext
from pacsnode.node.rest.context import CONFIG, JOBS, REGISTRY, blocking, core_of
from pacsnode.node.rest.params import flag_param, json_body, json_or_text
from pacsnode.node.settings import Modality


def _modality(request: web.Request) -> Modality:
    return request.app[REGISTRY].modality(request.match_info["name"])


#: Orthanc's ModalityManufacturer values (its DICOM quirks; pacsnode stores the name)
MANUFACTURERS = (
    "Generic",
    "GenericNoWildcardInDates",
    "GenericNoUniversalWildcard",
    "StoreScp",
    "Vitrea",
    "GE",
)
_OBSOLETE_MANUFACTURERS = {"MedInria", "ClearCanvas", "Dcm4Chee", "SyngoVia", "AgfaImpax", "EFilm2"}
#: what GET /modalities/{name} lists: the operations under it
_OPERATIONS = ["configuration", "echo", "find", "find-instance", "find-patient", "find-series",
               "find-study", "get", "move", "query", "store", "store-straight"]  # fmt: skip


def configuration(modality: Modality) -> dict[str, Any]:
    """A modality as Orthanc's ``/modalities?expand`` and ``/configuration`` show it."""
    shown: dict[str, Any] = {
        "AET": modality.aet,
        "Host": modality.host,
        "Port": modality.port,
        "Manufacturer": modality.manufacturer,
        **{f"Allow{kind}": True for kind in ("Echo", "Find", "Get", "Move", "Store")},
        "AllowTranscoding": False,
        "UseDicomTls": False,
    }
    if modality.local_aet:
        shown["LocalAet"] = modality.local_aet
    return shown


async def list_modalities(request: web.Request) -> web.Response:
    known = request.app[REGISTRY].modalities()
    if flag_param(request, "expand"):
        return web.json_response({name: configuration(m) for name, m in known.items()})
    return web.json_response(list(known))


async def show_modality(request: web.Request) -> web.Response:
    _modality(request)
    return web.json_response(_OPERATIONS)


async def show_configuration(request: web.Request) -> web.Response:
    return web.json_response(configuration(_modality(request)))


def _checked_aet(aet: Any, name: str) -> str:
    # What DICOM allows in an AE title; pynetdicom refuses the rest as a caller to accept.
    if (
        not isinstance(aet, str)
        or not 0 < len(aet) <= 16
        or not aet.strip()
        or "\\" in aet
        or not (aet.isascii() and aet.isprintable())
    ):
        raise BadRequest(f"{name} must be 1..16 ASCII characters, not all spaces, no backslash")
    return aet


def _manufacturer(value: Any) -> str:
    if value is None:
        return "Generic"
    if value in _OBSOLETE_MANUFACTURERS:  # Orthanc still accepts these, as Generic
        return "Generic"
    if value not in MANUFACTURERS:
        raise BadRequest(f"Manufacturer must be one of {', '.join(MANUFACTURERS)}")
    return str(value)


def parse_modality(name: str, body: Any) -> Modality:
    """Orthanc's forms: ``[AET, Host, Port(, Manufacturer)]`` or an object."""
    if isinstance(body, list) and len(body) >= 3:
        keys = ("AET", "Host", "Port", "Manufacturer")
        body = dict(zip(keys, body, strict=False))
    if not isinstance(body, dict):
        raise BadRequest('send {"AET": ..., "Host": ..., "Port": ...}')
    host, port = body.get("Host"), body.get("Port")
    if not isinstance(host, str) or not host:
        raise BadRequest("Host must be a host name or address")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise BadRequest("Port must be 1..65535")
    local = body.get("LocalAet")
    return Modality(
        name,
        _checked_aet(body.get("AET"), "AET"),
        host,
        port,
        local_aet=_checked_aet(local, "LocalAet") if local else "",
        manufacturer=_manufacturer(body.get("Manufacturer")),
    )


async def put_modality(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = request.match_info["name"]
    await blocking(request.app[REGISTRY].put_modality, parse_modality(name, body))
    return web.json_response({})


async def delete_modality(request: web.Request) -> web.Response:
    await blocking(request.app[REGISTRY].delete_modality, request.match_info["name"])
    return web.json_response({})


async def echo(request: web.Request) -> web.Response:
    await blocking(scu.echo, request.app[CONFIG].dicom.aet, _modality(request))
    return web.json_response({})


async def store_straight(request: web.Request) -> web.Response:
    """C-STORE the DICOM file in the body as it is, without storing it here."""
    modality = _modality(request)
    data = await request.read()
    sop_class, sop_instance = await blocking(
        scu.store_straight, request.app[CONFIG].dicom.aet, modality, data
    )
    return web.json_response({"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance})


async def echo_any(request: web.Request) -> web.Response:
    """Orthanc's ``/tools/dicom-echo``: a C-ECHO to a modality given in the body."""
    modality = parse_modality("(echo)", await json_body(request))
    await blocking(scu.echo, request.app[CONFIG].dicom.aet, modality)
    return web.json_response({})


def _resources_of(body: Any) -> tuple[list[str], bool]:
    if isinstance(body, str):
        return [body], False
    if isinstance(body, list):
        return [str(item) for item in body], False
    if isinstance(body, dict) and isinstance(body.get("Resources"), list):
        return [str(item) for item in body["Resources"]], bool(body.get("Asynchronous"))
    raise BadRequest('send a resource id, a list of them, or {"Resources": [...]}')


async def store(request: web.Request) -> web.Response:
    modality = _modality(request)
    resources, asynchronous = _resources_of(await json_or_text(request))
    core = core_of(request)

    chosen = await blocking(core.instances_of, resources)
    aet = request.app[CONFIG].dicom.aet

    def work(context: JobContext) -> dict[str, Any]:
        sent = scu.send(core, aet, modality, chosen, context)
        core.log_exports(resources, modality.name)
        return sent

    job = request.app[JOBS].submit(
        "DicomModalityStore", {"Modality": modality.name, "Resources": resources}, work
    )
    if asynchronous:
        return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    await asyncio.to_thread(job.finished.wait)
    return web.json_response(job.as_json(), status=200 if job.error is None else 502)


def setup_routes(app: web.Application) -> None:
    route = app.router
    route.add_get("/modalities", list_modalities)
    route.add_get("/modalities/{name}", show_modality)
    route.add_get("/modalities/{name}/configuration", show_configuration)
    route.add_put("/modalities/{name}", put_modality)
    route.add_delete("/modalities/{name}", delete_modality)
    route.add_post("/modalities/{name}/echo", echo)
    route.add_post("/tools/dicom-echo", echo_any)
    route.add_post("/modalities/{name}/store", store)
    route.add_post("/modalities/{name}/store-straight", store_straight)
