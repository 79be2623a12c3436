"""Exception handlers: every failure leaves as OpenAI-shaped JSON, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from switchyard.errors import SwitchyardError, error_body
from switchyard.server.http import json_response

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error"}


async def switchyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SwitchyardError)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    return Response(exc.to_json(), status_code=exc.status, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route {request.method} {request.url.path}; see GET /openapi.json."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    kind = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    return json_response(error_body(message, kind), status=exc.status_code)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = error_body("Switchyard failed to handle the request; see its log.", "server_error")
    return json_response(body, status=500)


HANDLERS = {
    SwitchyardError: switchyard_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
