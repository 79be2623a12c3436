"""GET /v1/models and GET /v1/models/{id} (ids contain '/')."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.errors import ModelNotFoundError
from switchyard.server.http import json_response
from switchyard.server.state import AppState


def routes(state: AppState) -> list[Route]:
    async def list_models(request: Request) -> Response:
        data = [entry.to_openai() for entry in state.registry.models()]
        return json_response({"object": "list", "data": data})

    async def retrieve_model(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        if not model_id or model_id.endswith("/"):
            # The path route takes any tail, so a trailing slash lands here, not in
            # the router's 404 that gives the same hint.
            raise ModelNotFoundError(model_id, " (drop the trailing slash)")
        entry = state.registry.resolve(model_id)
        if entry.source == "prefix":  # routable, but not a model we know of
            raise ModelNotFoundError(model_id)
        payload = entry.to_openai()
        payload["id"] = payload["identifier"] = model_id  # an alias answers under its name
        return json_response(payload)

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    ]
