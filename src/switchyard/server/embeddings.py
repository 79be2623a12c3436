"""POST /v1/embeddings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.router import route
from switchyard.server.http import json_response, read_json, unless_client_leaves
from switchyard.server.state import AppState
from switchyard.server.validation import EMBEDDINGS, check_body


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/embeddings", _create(state), methods=["POST"])]


def _create(state: AppState) -> Callable[[Request], Awaitable[Response]]:
    limit = state.config.server.max_body_bytes

    async def create_embeddings(request: Request) -> Response:
        body = await read_json(request, limit)
        check_body(body, EMBEDDINGS, ("model", "input"))
        entry, provider = route(state.registry, body["model"], "embedding")
        work = provider.embeddings({**body, "model": entry.provider_model_id})
        # Stopped when the client leaves: the inline model's batches are this server's
        # CPU, a provider's call its own (and the client's SDK may already be retrying).
        result = await unless_client_leaves(request, work)
        result["model"] = body["model"]
        return json_response(result)

    return create_embeddings
