"""An instance's raw content, as Orthanc's ``/instances/{id}/content`` and ``/header``.

- ``/content``: the top-level tags, as ``"gggg-eeee"``;
- ``/content/{gggg-eeee}``: a value's bytes as the file holds them, or the item
  indices of a sequence; ``/content/{seq}/{n}`` the tags of item n, and so on down;
- ``/content/7fe0-0010``: the items of the Pixel Data (for compressed frames the Basic
  Offset Table, then one fragment per frame, as pacsnode writes them; one item
  otherwise), ``/content/7fe0-0010/{n}`` the bytes of item n;
- ``/header``: the file meta information (group 0002) of the file ``/file`` serves.

The values are read from the P10 file pacsnode regenerates, so they are the bytes
``/file`` answers; Pixel Data comes from the stored frames without rebuilding the file.
"""

from __future__ import annotations

import io
import re
import struct
from typing import Any

from aiohttp import web
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.rest.context import blocking, core_of
from pacsnode.node.rest.formats import writer_for
from pacsnode.node.rest.tags import TagFormat, is_binary

PIXEL_DATA = 0x7FE00010
_TAG = re.compile(r"^[0-9a-fA-F]{4}-[0-9a-fA-F]{4}$")
_ITEM = 0xFFFEE000


def _tag_name(tag: int) -> str:
    return f"{tag >> 16:04x}-{tag & 0xFFFF:04x}"


def _parse_path(parts: list[str]) -> list[int]:
    """Tags at even positions, item indices at odd ones; BadRequest when malformed."""
    path = []
    for position, part in enumerate(parts):
        if position % 2 == 0:
            if not _TAG.match(part):
                raise BadRequest(f"{part!r} is not a tag written gggg-eeee")
            path.append(int(part.replace("-", ""), 16))
        else:
            if not part.isdigit():
                raise BadRequest(f"{part!r} is not an item index")
            path.append(int(part))
    return path


def _pixel_items(core: NodeCore, instance_id: str) -> list[bytes]:
    """The Pixel Data items: offsets table and one fragment per frame, or the whole value."""
    ref = core.instance_ref(instance_id)
    parts = core.instance_frames(ref)
    if not parts:
        return _pixel_items_of_file(core.instance_p10(ref))
    frames = [part.payload for part in parts]
    if not UID(parts[0].transfer_syntax).is_encapsulated:
        return [b"".join(frames)]
    padded = [frame + b"\0" * (len(frame) % 2) for frame in frames]
    table = b""  # one frame needs no offsets table (its only offset is 0)
    if len(padded) > 1:
        offsets, position = [], 0
        for frame in padded:
            offsets.append(position)
            position += len(frame) + 8
        table = struct.pack(f"<{len(offsets)}I", *offsets)
    return [table, *padded]


def _pixel_items_of_file(p10: bytes) -> list[bytes]:
    """Pixel Data kept whole (not split into frames): its items read from the file."""
    dataset = dcmread(io.BytesIO(p10))
    element = dataset.get_item(PIXEL_DATA)
    if element is None:
        raise NotFound("the instance has no Pixel Data")
    value = bytes(element.value or b"")
    if not (isinstance(element, RawDataElement) and element.length == 0xFFFFFFFF):
        return [value]
    items, position = [], 0
    while position + 8 <= len(value):
        group, number, length = struct.unpack_from("<HHI", value, position)
        if (group << 16 | number) != _ITEM:
            break
        items.append(value[position + 8 : position + 8 + length])
        position += 8 + length
    return items


def _walk(dataset: Dataset, path: list[int]) -> Any:
    """Follow tag, index, tag, ... down from the dataset; NotFound where it leads nowhere."""
    current: Any = dataset
    for position, step in enumerate(path):
        if position % 2 == 0:
            raw = current.get_item(step) if isinstance(current, Dataset) else None
            if raw is None:
                raise NotFound(f"no tag {_tag_name(step)} there")
            current = _sequence_or_raw(current, step, raw)
        else:
            items = current.value if _is_sequence(current) else None
            if items is None or step >= len(items):
                raise NotFound(f"no item {step} there")
            current = items[step]
    return current


def _sequence_or_raw(dataset: Dataset, tag: int, raw: Any) -> Any:
    """The element as a sequence when it is one (a VR-less file says so only once read),
    otherwise as it was read: its bytes untouched."""
    try:
        element = dataset[tag]
    except Exception:  # a value pydicom cannot read is still bytes to answer with
        return raw
    return element if _is_sequence(element) else raw


def _is_sequence(element: Any) -> bool:
    return getattr(element, "VR", None) == "SQ"


def _answer(found: Any) -> web.Response:
    if isinstance(found, Dataset):
        return web.json_response([_tag_name(int(element.tag)) for element in found])
    if _is_sequence(found):
        return web.json_response([str(index) for index in range(len(found.value))])
    value = found.value if found.value is not None else b""
    body = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return web.Response(body=body, content_type="application/octet-stream")


def _content(core: NodeCore, instance_id: str, path: list[int]) -> Any:
    ref = core.instance_ref(instance_id)
    dataset = dcmread(io.BytesIO(core.instance_p10(ref)))
    return _walk(dataset, path)


async def content(request: web.Request) -> web.Response:
    core, instance_id = core_of(request), request.match_info["id"]
    raw = request.match_info.get("path", "")
    path = _parse_path([part for part in raw.split("/") if part])
    if path and path[0] == PIXEL_DATA:
        if len(path) > 2:
            raise NotFound("Pixel Data items hold no tags")
        items = await blocking(_pixel_items, core, instance_id)
        if len(path) == 1:
            return web.json_response([str(index) for index in range(len(items))])
        if path[1] >= len(items):
            raise NotFound(f"Pixel Data has no item {path[1]}")
        return web.Response(body=items[path[1]], content_type="application/octet-stream")
    return _answer(await blocking(_content, core, instance_id, path))


def _header(core: NodeCore, instance_id: str) -> dict[str, Any]:
    """The file meta information of the regenerated file, as DICOM JSON."""
    p10 = core.instance_p10(core.instance_ref(instance_id))
    read = dcmread(io.BytesIO(p10), stop_before_pixels=True, specific_tags=[0x00080018])
    meta = read.file_meta.to_json_dict(1024, lambda element: "")
    return {key: element for key, element in meta.items() if not is_binary(element)}


async def header(request: web.Request) -> web.Response:
    meta = await blocking(_header, core_of(request), request.match_info["id"])
    return web.json_response(writer_for(request, TagFormat.FULL).dataset(meta))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/instances/{id}/content", content)
    app.router.add_get("/instances/{id}/content/{path:.+}", content)
    app.router.add_get("/instances/{id}/header", header)
