"""How a request asks its tags shown: the format, the tags it requests, the lengths it lifts.

``?simplify``, ``?short`` and ``?full`` pick the format (``"Short": true`` / ``"Full": true``
in a JSON body); ``?ignore-length=0018-1020`` shows those tags however long;
``?whole`` keeps what an instance stores after its Pixel Data; ``?requestedTags=A;B``
(or ``?requested-tags=``, or ``"RequestedTags": [...]``) adds a ``RequestedTags`` object
to each resource shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pacsnode.node.errors import BadRequest
from pacsnode.node.rest.context import CONFIG
from pacsnode.node.rest.params import flag_param
from pacsnode.node.rest.tags import (
    TagFormat,
    TagNames,
    TagWriter,
    body_format,
    parse_tag,
    parse_tags,
    tag_format,
)


def names_of(app: web.Application) -> TagNames:
    """The tag names of the node's configuration (its private dictionary; a few entries)."""
    return TagNames.of(app[CONFIG].private_tags)


def writer_for(request: web.Request, default: TagFormat) -> TagWriter:
    """A tag writer in the format the request asks (``default`` when it asks none)."""
    ignored = request.query.get("ignore-length", "")
    return TagWriter(
        fmt=tag_format(request.query, default),
        names=names_of(request.app),
        ignore_length=frozenset(parse_tags(ignored)) if ignored else frozenset(),
        whole=flag_param(request, "whole") if "whole" in request.query else False,
    )


@dataclass(frozen=True)
class ResourceView:
    """How resources are shown: their main tags' format, and the tags requested besides."""

    fmt: TagFormat = TagFormat.HUMAN
    requested: tuple[int, ...] | None = None  # None: no RequestedTags field at all
    names: TagNames = field(default_factory=TagNames)

    def writer(self) -> TagWriter:
        return TagWriter(fmt=self.fmt, names=self.names, whole=True)


def resource_view(request: web.Request) -> ResourceView:
    """The view ``GET /{level}``, ``GET /{level}/{id}`` and the hierarchy walks ask."""
    raw = request.query.get("requestedTags", request.query.get("requested-tags"))
    requested = tuple(parse_tags(raw)) if raw is not None else None
    return ResourceView(
        tag_format(request.query, TagFormat.HUMAN), requested, names_of(request.app)
    )


def body_view(body: Mapping[str, Any], app: web.Application) -> ResourceView:
    """The view a JSON body asks (``/tools/find``, ``/tools/bulk-content``)."""
    raw = body.get("RequestedTags")
    requested: tuple[int, ...] | None = None
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise BadRequest("'RequestedTags' must be a list of tags or keywords")
        requested = tuple(parse_tag(item) for item in raw)
    return ResourceView(body_format(body), requested, names_of(app))
