"""Exception handlers: every failure leaves as OpenAI-shaped JSON, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from switchyard.errors import InvalidRequestError, NotFoundError, SwitchyardError, UpstreamError
from switchyard.metrics import UPSTREAM_ERRORS

log = logging.getLogger(__name__)


class MethodNotAllowedError(InvalidRequestError):
    status = 405


def count(exc: SwitchyardError) -> None:
    """Counts a provider's failure, whether it is an error answer or ends a stream."""
    if isinstance(exc, UpstreamError):
        UPSTREAM_ERRORS.labels(exc.provider_id, exc.error_type).inc()


async def switchyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SwitchyardError)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    count(exc)
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
        # A client's base_url without /v1 (or with it twice): the route it meant.
        twice = path.startswith("/v1/v1/")
        meant = path[3:] if twice else "/v1" + path
        if (twice or not (hint or path.startswith("/v1/"))) and _routes_taking(request, meant):
            hint = f" (did you mean {meant}? an OpenAI client's base_url ends in /v1)"
        error = NotFoundError(f"No route {request.method} {path}{hint}; see GET /openapi.json.")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        error = MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.url.path}"
            + (f"; use {allowed}." if allowed else ".")
        )
        if allowed:
            error.headers["Allow"] = allowed  # RFC 9110 asks a 405 to list them
    else:
        error = InvalidRequestError(str(exc.detail))
        error.status = exc.status_code  # type: ignore[misc]
    return await switchyard_error(request, error)


def _routes_taking(request: Request, path: str) -> list[BaseRoute]:
    """The routes that take ``path``, with any method."""
    scope = {**request.scope, "path": path}
    routes = getattr(request.scope.get("router"), "routes", ())
    return [route for route in routes if route.matches(scope)[0] is not Match.NONE]


def _allowed_methods(request: Request) -> str | None:
    """Every method some route takes on this path: Starlette's own 405 names only the
    first route's (GET for /v1/chat/completions/{id}, which also takes POST and DELETE)."""
    methods: set[str] = set()
    for route in _routes_taking(request, request.scope["path"]):
        methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods)) or None


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    error = SwitchyardError("Switchyard failed to handle the request; see its log.")
    return await switchyard_error(request, error)


HANDLERS = {
    SwitchyardError: switchyard_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
