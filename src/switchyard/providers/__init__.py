"""Provider types by name, imported lazily, as uvicorn does for its loops and protocols.

A ``type`` that is not in :data:`PROVIDERS` is taken as an import path
(``"package.module:Class"``), so a plugin provider needs no change here. A plugin class
built on :class:`~switchyard.providers.openai_compat.OpenAICompatProvider` names the
``options`` it reads from its config in ``known_options``; any other is refused at start.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from switchyard.config import ProviderConfig
from switchyard.errors import ConfigError
from switchyard.providers.base import Provider
from switchyard.upstream import Transport

PROVIDERS: dict[str, str] = {
    "sentence-transformers": (
        "switchyard.providers.sentence_transformers:SentenceTransformersProvider"
    ),
    "together": "switchyard.providers.together:TogetherProvider",
    "openai": "switchyard.providers.openai:OpenAIProvider",
    "fireworks": "switchyard.providers.fireworks:FireworksProvider",
    "groq": "switchyard.providers.groq:GroqProvider",
    "gemini": "switchyard.providers.gemini:GeminiProvider",
    "ollama": "switchyard.providers.ollama:OllamaProvider",
    "vllm": "switchyard.providers.vllm:VLLMProvider",
    "openai_compatible": "switchyard.providers.openai_compat:OpenAICompatProvider",
}


def provider_class(type_name: str) -> Any:
    """The class for a provider type: a registered name or ``module:Class``."""
    target = PROVIDERS.get(type_name, type_name)
    module_name, _, attr = target.partition(":")
    if not attr:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider type '{type_name}'; known types: {known}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load provider type '{type_name}' ({target}): {err}") from err


def create_provider(config: ProviderConfig, transport: Transport | None = None) -> Provider:
    cls = provider_class(config.type)
    if not isinstance(cls, type):
        raise ConfigError(f"provider type '{config.type}' is not a class")
    try:
        # Only the call's shape is judged here: a TypeError raised inside a provider's
        # own __init__ is its bug, and keeps its traceback.
        inspect.signature(cls).bind(config, transport)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"provider type '{config.type}' is not a provider class: {cls.__name__}"
            f"(config, transport) does not fit its constructor ({err})"
        ) from None
    provider: Provider = cls(config, transport)
    return provider


def providers_from_env(env: Mapping[str, str]) -> list[ProviderConfig]:
    # Each type says whether the environment turns it on (its key or URL is set).
    found = (provider_class(name).from_env(env) for name in PROVIDERS)
    return [config for config in found if config is not None]


__all__ = ["PROVIDERS", "create_provider", "provider_class", "providers_from_env"]
