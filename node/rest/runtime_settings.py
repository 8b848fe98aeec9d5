"""Settings Orthanc lets scripts change at run time, under ``/tools``.

``/tools/default-encoding``, ``/tools/accepted-transfer-syntaxes`` and
``/tools/unknown-sop-class-accepted`` are read and changed here and kept in the
index (so they survive a restart); ``/tools/execute-script`` is refused with a
clear answer, since pacsnode runs no Lua.
"""

from __future__ import annotations

import fnmatch
import json

from aiohttp import web
from pynetdicom import ALL_TRANSFER_SYNTAXES

from pacsnode.node.encodings import check_encoding
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.rest.context import CONFIG, blocking, core_of

DEFAULT_ENCODING_SETTING = "default_encoding"
ACCEPTED_SYNTAXES_SETTING = "accepted_transfer_syntaxes"
UNKNOWN_SOP_CLASS_SETTING = "unknown_sop_class_accepted"
_TRUE, _FALSE = ("1", "true"), ("0", "false")


class NoScripting(DomainError):
    """pacsnode does not run Lua scripts (Orthanc's ``/tools/execute-script``)."""

    code = "no-lua"
    http_status = 400


def _text(value: str) -> web.Response:
    return web.Response(text=value, content_type="text/plain")


async def get_default_encoding(request: web.Request) -> web.Response:
    default = request.app[CONFIG].dicom.default_encoding
    return _text(await blocking(core_of(request).setting, DEFAULT_ENCODING_SETTING, default))


async def put_default_encoding(request: web.Request) -> web.Response:
    name = check_encoding(await request.text())
    await blocking(core_of(request).save_setting, DEFAULT_ENCODING_SETTING, name)
    return _text(name)


def _accepted(patterns: list[str]) -> list[str]:
    """The transfer syntaxes pynetdicom knows that match any pattern (``*``, ``?``)."""
    return [uid for uid in ALL_TRANSFER_SYNTAXES if any(fnmatch.fnmatch(uid, p) for p in patterns)]


async def get_accepted_syntaxes(request: web.Request) -> web.Response:
    stored = await blocking(core_of(request).setting, ACCEPTED_SYNTAXES_SETTING, '["*"]')
    return web.json_response(_accepted(json.loads(stored)))


async def put_accepted_syntaxes(request: web.Request) -> web.Response:
    text = (await request.text()).strip()
    try:
        patterns = json.loads(text) if text.startswith("[") else [text]
    except ValueError:
        raise BadRequest("send a JSON list of transfer syntax UIDs or patterns") from None
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise BadRequest("send a JSON list of transfer syntax UIDs or patterns (* and ?)")
    await blocking(core_of(request).save_setting, ACCEPTED_SYNTAXES_SETTING, json.dumps(patterns))
    return web.json_response(_accepted(patterns))


async def get_unknown_sop_class(request: web.Request) -> web.Response:
    value = await blocking(core_of(request).setting, UNKNOWN_SOP_CLASS_SETTING, "0")
    return web.json_response(int(value))  # 0 or 1, as Orthanc answers


async def put_unknown_sop_class(request: web.Request) -> web.Response:
    text = (await request.text()).strip().lower()
    if text not in _TRUE + _FALSE:
        raise BadRequest("send 1, 0, true or false")
    value = "1" if text in _TRUE else "0"
    await blocking(core_of(request).save_setting, UNKNOWN_SOP_CLASS_SETTING, value)
    return web.json_response(int(value))


async def execute_script(request: web.Request) -> web.Response:
    raise NoScripting("pacsnode runs no Lua scripts: use the REST API, or a plugin")


def setup_routes(app: web.Application) -> None:
    route = app.router
    route.add_get("/tools/default-encoding", get_default_encoding)
    route.add_put("/tools/default-encoding", put_default_encoding)
    route.add_get("/tools/accepted-transfer-syntaxes", get_accepted_syntaxes)
    route.add_put("/tools/accepted-transfer-syntaxes", put_accepted_syntaxes)
    route.add_get("/tools/unknown-sop-class-accepted", get_unknown_sop_class)
    route.add_put("/tools/unknown-sop-class-accepted", put_unknown_sop_class)
    route.add_post("/tools/execute-script", execute_script)
