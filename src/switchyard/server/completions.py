"""POST /v1/completions (the legacy text completions API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.router import route
from switchyard.server.http import EventStream, json_response, read_json, unless_client_leaves
from switchyard.server.state import AppState
from switchyard.server.stream import relay
from switchyard.server.validation import COMPLETIONS, check_body


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/completions", _create(state), methods=["POST"])]


def _create(state: AppState) -> Callable[[Request], Awaitable[Response]]:
    limit = state.config.server.max_body_bytes

    async def create_completion(request: Request) -> Response:
        body = await read_json(request, limit)
        check_body(body, COMPLETIONS, ("model", "prompt"))
        entry, provider = route(state.registry, body["model"], "llm")
        upstream = {**body, "model": entry.provider_model_id}
        overrides = {"model": body["model"]}
        if body.get("stream"):
            chunks = await unless_client_leaves(request, provider.completions_stream(upstream))
            return EventStream(relay(chunks, overrides))
        result = await unless_client_leaves(request, provider.completions(upstream))
        result.update(overrides)
        return json_response(result)

    return create_completion
