"""Health, version and Llama Stack's provider listing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard._version import __version__
from switchyard.errors import NotFoundError
from switchyard.server.http import json_response
from switchyard.server.state import AppState


def routes(state: AppState) -> list[Route]:
    def provider_info(provider_id: str) -> dict[str, Any]:
        provider = state.providers[provider_id]
        kind = "inline" if provider.inline else "remote"
        return {
            "api": "inference",
            "provider_id": provider_id,
            "provider_type": f"{kind}::{provider.config.type}",
            "config": provider.describe(),
            "health": state.registry.status[provider_id].to_dict(),
        }

    async def health(request: Request) -> Response:
        return json_response({"status": "OK"})

    async def version(request: Request) -> Response:
        return json_response({"version": __version__})

    async def list_providers(request: Request) -> Response:
        return json_response({"data": [provider_info(pid) for pid in state.providers]})

    async def get_provider(request: Request) -> Response:
        provider_id = request.path_params["provider_id"]
        if provider_id not in state.providers:
            raise NotFoundError(
                f"No provider '{provider_id}'; GET /v1/providers lists them.",
                param="provider_id",
            )
        return json_response(provider_info(provider_id))

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/version", version, methods=["GET"]),
        Route("/v1/providers", list_providers, methods=["GET"]),
        Route("/v1/providers/{provider_id:path}", get_provider, methods=["GET"]),
    ]
