"""A direct dispatcher in front of Starlette for routes without path parameters.

Starlette's middleware stack and regex routing cost a fifth of a proxied request's CPU
(measured with py-spy; see bench/NOTES.md). Fixed paths such as
``POST /v1/chat/completions`` are looked up in a dict and their endpoint called
directly; errors are mapped by the same handlers Starlette uses. Everything else
(path parameters, lifespan, unknown routes) falls through to the Starlette app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from switchyard.errors import SwitchyardError
from switchyard.server.auth import KeyCheck
from switchyard.server.browsers import BrowserGuard
from switchyard.server.errors import switchyard_error, unexpected_error
from switchyard.server.request_id import HEADER, assign

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def fixed_routes(routes: list[BaseRoute]) -> dict[tuple[str, str], Endpoint]:
    table: dict[tuple[str, str], Endpoint] = {}
    for route in routes:
        if isinstance(route, Route) and not route.param_convertors:
            for method in route.methods or ():
                table[(method, route.path)] = route.endpoint
    return table


# Set on a request a trusted web page sent, once screened: CORS wraps the same app.
_SCREENED = "switchyard.screened"


class FastPath:
    """ASGI app: fixed routes straight to their endpoint, the rest to ``fallback``; every
    request screened for web pages first (``server.browsers``), then, with ``keys``,
    checked for a key (``server.auth``)."""

    def __init__(
        self,
        fallback: Starlette,
        table: dict[tuple[str, str], Endpoint],
        keys: KeyCheck | None = None,
        browsers: BrowserGuard | None = None,
    ) -> None:
        self.fallback = fallback
        self.table = table
        self.keys = keys
        self.browsers = browsers
        # allow_origins "*": the guard has already refused every origin not trusted.
        self.cors = CORSMiddleware(
            self,
            allow_origins=["*"],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=["retry-after", "retry-after-ms", "x-should-retry", "x-request-id"],
            max_age=600,
            # Chromium asks before a public page calls a private address (localhost):
            # the guard has already said whether this page may.
            allow_private_network=True,
        )
        self.state = fallback.state  # app.state.switchyard, as on the Starlette app
        self.routes = fallback.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.fallback(scope, receive, send)
            return
        rid = assign(scope)
        if self.browsers is not None and _SCREENED not in scope:
            screened = self.browsers.screen(scope)
            if screened is not False:
                if screened is True:
                    scope[_SCREENED] = True
                    # A preflight is answered by the CORS middleware itself.
                    await self.cors(scope, receive, _with_id(send, rid))
                else:
                    await _refuse(screened, scope, receive, send)
                return
        if self.keys is not None and (refused := self.keys.refusal(scope)) is not None:
            await _refuse(refused, scope, receive, send)
            return
        endpoint = self.table.get((scope["method"], scope["path"]))
        if endpoint is None:
            await _answered_once(self.fallback, scope, receive, send, rid)
            return
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except SwitchyardError as err:
            response = await switchyard_error(request, err)
        except Exception as err:  # the same last resort as Starlette's: JSON, logged
            response = await unexpected_error(request, err)
        # On the response, not by wrapping send: nothing more per message of a stream.
        response.raw_headers.append((HEADER, rid))
        await response(scope, receive, send)


async def _answered_once(
    app: Starlette, scope: Scope, receive: Receive, send: Send, rid: bytes
) -> None:
    """Run ``app``, whose last-resort handler answers an unexpected error with a logged
    500 and then, as Starlette always does, raises it again. Once that answer is sent
    the error is done with: raised further, uvicorn would log it a second time and close
    the client's keep-alive connection. One raised before a whole answer went out goes
    on to uvicorn, which then ends the connection as it should. Each answer gets the
    request's id."""
    answered = False
    send = _with_id(send, rid)

    async def send_noting_the_end(message: Message) -> None:
        nonlocal answered
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered = True

    try:
        await app(scope, receive, send_noting_the_end)
    except Exception:
        if not answered:
            raise


def _with_id(send: Send, rid: bytes) -> Send:
    """``send`` that gives a response head the request's id if it has none yet."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(name.lower() == HEADER for name, _ in headers):
                message["headers"] = [*headers, (HEADER, rid)]
        await send(message)

    return send_with_id


async def _refuse(error: SwitchyardError, scope: Scope, receive: Receive, send: Send) -> None:
    response = await switchyard_error(Request(scope, receive), error)
    response.raw_headers.append((HEADER, assign(scope)))
    await response(scope, receive, send)
