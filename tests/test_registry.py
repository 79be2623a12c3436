"""The model registry: routing by prefix, allowed_models, a provider that fails to list."""

from __future__ import annotations

import httpx
import pytest
from tests.support.server import thread_server

from switchyard.config import Config, ProviderConfig
from switchyard.errors import ModelNotFoundError
from switchyard.providers import create_provider
from switchyard.registry import ModelRegistry


def _registry(**provider: object) -> ModelRegistry:
    config = Config(
        providers=[
            ProviderConfig(
                id="p", type="openai_compatible", base_url="http://127.0.0.1:9/v1", **provider
            )
        ]  # type: ignore[arg-type]
    )
    return ModelRegistry(config, {p.id: create_provider(p) for p in config.providers})


def test_prefix_routes_to_the_provider() -> None:
    entry = _registry().resolve("p/some/new-model")
    assert (entry.provider_id, entry.provider_model_id, entry.source) == (
        "p",
        "some/new-model",
        "prefix",
    )
    with pytest.raises(ModelNotFoundError):
        _registry().resolve("q/model")


def test_allowed_models_limit_routing_too() -> None:
    registry = _registry(allowed_models=["a"])
    assert registry.resolve("p/a").provider_model_id == "a"
    with pytest.raises(ModelNotFoundError):
        registry.resolve("p/b")


def test_a_plugin_whose_listing_raises_does_not_stop_the_server() -> None:
    config = {
        "server": {"model_refresh_interval": 0.2},
        "providers": [
            {
                "id": "broken",
                "type": "tests.support.broken_provider:BrokenListingProvider",
                "base_url": "http://127.0.0.1:9/v1",
            },
            {"id": "st", "type": "sentence-transformers"},
        ],
    }
    with thread_server(config) as server:
        health = httpx.get(server.base_url + "/providers/broken").json()["health"]
        assert health["status"] == "Error" and "plugin bug" in health["message"]
        assert [m["id"] for m in httpx.get(server.base_url + "/models").json()["data"]] == [
            "st/all-MiniLM-L6-v2"
        ]
