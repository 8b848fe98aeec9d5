"""Request body limits of the REST API: ``[http] max_request_size_mb``.

aiohttp enforces ``client_max_size`` only on bodies it reads whole (``request.read()``,
``.json()``, ``.post()``); handlers that stream a body to a spool file check it here, from
the declared Content-Length first (answered before a byte is read) and then as it arrives
(a chunked body declares nothing).
"""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.errors import DomainError
from pacsnode.node.rest.context import CONFIG

_MB = 1024 * 1024


class RequestTooLarge(DomainError):
    """The request body is larger than ``[http] max_request_size_mb``."""

    code = "request-too-large"
    http_status = 413


def max_request_bytes(request: web.Request) -> int:
    return request.app[CONFIG].http.max_request_bytes


def check_declared_size(request: web.Request) -> int:
    """The most bytes this request's body may have; refuses a larger Content-Length."""
    limit = max_request_bytes(request)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    return limit


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is larger than the node accepts ({limit // _MB} MiB, "
        "[http] max_request_size_mb)"
    )
