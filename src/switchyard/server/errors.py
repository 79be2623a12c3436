"""Exception handlers: every failure leaves as OpenAI-shaped JSON, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from switchyard.errors import InvalidRequestError, NotFoundError, SwitchyardError, UpstreamError
from switchyard.metrics import UPSTREAM_ERRORS

log = logging.getLogger(__name__)


class MethodNotAllowedError(InvalidRequestError):
    status = 405


async def switchyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SwitchyardError)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    if isinstance(exc, UpstreamError):
        UPSTREAM_ERRORS.labels(exc.provider_id, exc.error_type).inc()
    return Response(
        exc.to_json(),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers or None,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: SwitchyardError
    if exc.status_code == 404:
        path = request.url.path
        hint = " (drop the trailing slash)" if len(path) > 1 and path.endswith("/") else ""
        error = NotFoundError(f"No route {request.method} {path}{hint}; see GET /openapi.json.")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.url.path}."
        )
    else:
        error = InvalidRequestError(str(exc.detail))
        error.status = exc.status_code  # type: ignore[misc]
    return await switchyard_error(request, error)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    error = SwitchyardError("Switchyard failed to handle the request; see its log.")
    return await switchyard_error(request, error)


HANDLERS = {
    SwitchyardError: switchyard_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
