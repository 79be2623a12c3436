"""The model registry: routing by prefix, allowed_models, a provider that fails to list."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.support.server import thread_server

from switchyard import registry as registry_module
from switchyard.config import Config, ProviderConfig
from switchyard.errors import ModelNotFoundError, WrongModelTypeError
from switchyard.providers import create_provider
from switchyard.registry import ModelRegistry
from switchyard.router import route


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


def test_gemini_allowed_models_route_either_name() -> None:
    """Given as Google lists them (Llama Stack's configs), or bare: both names route."""
    for given in ("models/gemini-2.5-flash", "gemini-2.5-flash"):
        provider = ProviderConfig(id="gemini", type="gemini", api_key="k", allowed_models=[given])
        registry = ModelRegistry(
            Config(providers=[provider]), {"gemini": create_provider(provider)}
        )
        for asked in ("gemini/gemini-2.5-flash", "gemini/models/gemini-2.5-flash"):
            assert registry.resolve(asked).provider_id == "gemini"
        with pytest.raises(ModelNotFoundError):
            registry.resolve("gemini/gemini-2.0-flash")
        assert registry.provider("gemini").describe()["allowed_models"] == [given]


@pytest.mark.parametrize(
    ("given", "routed", "refused"),
    [
        ("llama3.2", ["llama3.2", "llama3.2:latest"], ["llama3.2:1b", "llama3"]),
        ("llama3.2:latest", ["llama3.2", "llama3.2:latest"], ["llama3.2:1b"]),
        ("llama3.2:1b", ["llama3.2:1b"], ["llama3.2", "llama3.2:latest"]),
        # A registry's port is not a tag.
        ("host:5000/ns/m", ["host:5000/ns/m", "host:5000/ns/m:latest"], ["host:5000/ns/n"]),
    ],
)
def test_ollama_allowed_models_take_a_name_without_its_tag_as_latest(
    given: str, routed: list[str], refused: list[str]
) -> None:
    provider = ProviderConfig(id="ollama", type="ollama", allowed_models=[given])
    registry = ModelRegistry(Config(providers=[provider]), {"ollama": create_provider(provider)})
    for name in routed:
        assert registry.resolve(f"ollama/{name}").provider_model_id == name
    for name in refused:
        with pytest.raises(ModelNotFoundError):
            registry.resolve(f"ollama/{name}")
    assert registry.provider("ollama").describe()["allowed_models"] == [given]


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


def _declaring(*models: dict[str, object]) -> ModelRegistry:
    config = Config.model_validate(
        {"providers": [{"id": "st", "type": "sentence-transformers"}], "models": list(models)}
    )
    return ModelRegistry(config, {p.id: create_provider(p) for p in config.providers})


async def test_declaring_a_listed_model_keeps_what_its_provider_lists() -> None:
    # Declared only to give it an alias: it stays an embedding model with its dimension.
    registry = _declaring(
        {"provider_id": "st", "provider_model_id": "all-MiniLM-L6-v2", "aliases": ["minilm"]},
        {"provider_id": "st", "provider_model_id": "unlisted"},
    )
    await registry.refresh(10)
    for name in ("minilm", "st/all-MiniLM-L6-v2"):
        entry, _ = route(registry, name, "embedding")
        assert entry.source == "config"
        assert entry.metadata["embedding_dimension"] == 384
    # Nothing says what it is: either endpoint may try it, and its provider decides.
    assert registry.resolve("st/unlisted").model_type is None


async def test_a_declared_type_wins_over_the_listed_one() -> None:
    registry = _declaring(
        {
            "provider_id": "st",
            "provider_model_id": "all-MiniLM-L6-v2",
            "model_type": "llm",
            "metadata": {"embedding_dimension": 1},
        }
    )
    await registry.refresh(10)
    entry = registry.resolve("st/all-MiniLM-L6-v2")
    assert (entry.model_type, entry.metadata["embedding_dimension"]) == ("llm", 1)
    with pytest.raises(WrongModelTypeError):
        route(registry, "st/all-MiniLM-L6-v2", "embedding")


async def test_a_provider_down_at_start_is_listed_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "RETRY_FIRST", 0.05)
    config = Config.model_validate(
        {
            "server": {"model_refresh_interval": 300},
            "providers": [
                {
                    "id": "late",
                    "type": "tests.support.broken_provider:DownAtFirstProvider",
                    "base_url": "http://127.0.0.1:9/v1",
                }
            ],
        }
    )
    registry = ModelRegistry(config, {p.id: create_provider(p) for p in config.providers})
    await registry.refresh(10)
    assert registry.status["late"].healthy is False and registry.models() == []
    refresher = asyncio.create_task(registry.refresh_forever())
    # Retried after 0.05 s (fails again), then after 0.15 s more: listed, not 300 s later.
    await asyncio.sleep(1.0)
    refresher.cancel()
    assert [m.id for m in registry.models()] == ["late/late-model"]
    assert registry.status["late"].healthy is True
