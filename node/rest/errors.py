"""The one JSON error envelope of the REST API, and the middleware that answers with it.

Every 4xx and 5xx answer is ``{"HttpStatus", "HttpError", "ErrorCode", "Message", "Method",
"Uri"}``: a domain error's own status and code, aiohttp's for routing errors, and a bland 500
(the details go to the node's log, never to the client) for anything else.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from pacsnode.node.errors import DomainError

log = logging.getLogger(__name__)


def error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {
            "HttpStatus": status,
            "HttpError": web.Response(status=status).reason,
            "ErrorCode": code,
            "Message": message,
            "Method": request.method,
            "Uri": request.path,
        },
        status=status,
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(request, exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, exc.status, "http-error", exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(
            request, 500, "internal-error", "internal error; the node's log has the details"
        )
