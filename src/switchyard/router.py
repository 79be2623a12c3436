"""Resolve a client's model id to the provider that serves it.

The one place that knows which endpoint a model type belongs to; fallbacks and load
balancing will live here too.
"""

from __future__ import annotations

from switchyard.config import ModelType
from switchyard.errors import WrongModelTypeError
from switchyard.providers.base import ModelEntry, Provider
from switchyard.registry import ModelRegistry

_ENDPOINT = {"llm": "/v1/chat/completions or /v1/completions", "embedding": "/v1/embeddings"}


def route(registry: ModelRegistry, model_id: str, want: ModelType) -> tuple[ModelEntry, Provider]:
    """The model's entry and provider; a model of the other type is a clear 400."""
    entry = registry.resolve(model_id)
    if entry.model_type is not None and entry.model_type != want:
        kind = "an embedding model" if entry.model_type == "embedding" else "a language model"
        raise WrongModelTypeError(
            f"'{model_id}' is {kind}; use it with {_ENDPOINT[entry.model_type]}, "
            f"or pick a model of type '{want}' from GET /v1/models.",
            param="model",
            code="wrong_model_type",
        )
    return entry, registry.provider(entry.provider_id)
