"""The one JSON error envelope of the REST API, and the middleware that answers with it.

Every 4xx and 5xx answer is ``{"HttpStatus", "HttpError", "ErrorCode", "Message", "Method",
"Uri", "OrthancStatus", "OrthancError"}``: a domain error's own status and code (and
Orthanc's number and text for it), aiohttp's for routing errors, and a bland 500 (the details
go to the node's log, never to the client) for anything else. A 405 is answered as Orthanc
does, without a body, naming the allowed methods.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from pacsnode.node import audit
from pacsnode.node.errors import DomainError
from pacsnode.node.rest.context import USER

log = logging.getLogger(__name__)


#: pacsnode's error code -> Orthanc's (OrthancStatus, OrthancError), which client
#: libraries read; codes not listed take the entry of their HTTP status below.
_ORTHANC_ERRORS = {
    "unknown-resource": (17, "Unknown resource"),
    "not-found": (7, "Accessing an inexistent item"),
    "bad-request": (8, "Bad request"),
    "invalid-dicom": (15, "Bad file format"),
    "missing-uid": (15, "Bad file format"),
    "invalid-uid": (15, "Bad file format"),
    "storage-full": (19, "The file storage is full"),
    "read-only-metadata": (22, "Cannot modify a read-only data structure"),
    "unauthorized": (29, "Unauthorized"),
    "dicom-network-error": (9, "Error in the network protocol"),
    "no-lua": (2, "Not implemented yet"),
    "internal-error": (-1, "Internal error"),
}
_ORTHANC_ERRORS_BY_STATUS = {
    400: (8, "Bad request"),
    401: (29, "Unauthorized"),
    403: (22, "Cannot modify a read-only data structure"),
    404: (7, "Accessing an inexistent item"),
    409: (6, "Bad sequence of calls"),
}


def _orthanc_error(status: int, code: str) -> tuple[int, str]:
    return _ORTHANC_ERRORS.get(code) or _ORTHANC_ERRORS_BY_STATUS.get(
        status, (-1, "Internal error")
    )


def error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    orthanc_status, orthanc_error = _orthanc_error(status, code)
    return web.json_response(
        {
            "HttpStatus": status,
            "HttpError": web.Response(status=status).reason,
            "ErrorCode": code,
            "Message": message,
            "Method": request.method,
            "Uri": request.path,
            "OrthancStatus": orthanc_status,
            "OrthancError": orthanc_error,
        },
        status=status,
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as the JSON envelope; every request, as answered, to the audit log (here, as
    the outermost middleware that sees the authenticated user afterwards)."""
    started = time.monotonic()
    status = 500  # a handler cancelled mid-way (the client went away) is logged so
    try:
        answer = await _answered(request, handler)
        status = answer.status
        return answer
    finally:
        audit.rest_request(
            request.get(USER),
            request.remote,
            request.method,
            request.path,
            status,
            time.monotonic() - started,
        )


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(request, exc.http_status, exc.code, exc.message)
    except web.HTTPMethodNotAllowed as exc:
        # As Orthanc answers it: no body, the methods the path takes in Allow.
        return web.Response(status=405, headers={"Allow": ", ".join(sorted(exc.allowed_methods))})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, exc.status, "http-error", exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(
            request, 500, "internal-error", "internal error; the node's log has the details"
        )
