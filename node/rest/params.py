"""Reading a request: path levels, query parameters and bodies, refused with ``BadRequest``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level


def level_of(request: web.Request) -> Level:
    """The level a ``/{patients|studies|series|instances}/...`` path names."""
    return Level.parse(request.match_info["level"])


def int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else non_negative_int(name, raw)


def non_negative_int(name: str, raw: str) -> int:
    """A query parameter's whole, non-negative value; BadRequest naming it otherwise."""
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer") from None
    if value < 0:
        raise BadRequest(f"'{name}' must not be negative")
    return value


def flag_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() not in ("false", "0", "no")


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("the body must be JSON") from None


async def json_or_text(request: web.Request) -> Any:
    """Orthanc's ``/store`` bodies: JSON (a list, an object, a quoted id) or a bare id."""
    text = (await request.text()).strip()
    if not text.startswith(("[", "{", '"')):
        return text
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("the body must be JSON or a resource id") from None
