"""Fireworks AI: embeddings refuse ``user``; its list says a model's ``kind``."""

from __future__ import annotations

from typing import ClassVar

from switchyard.config import ModelType
from switchyard.providers.base import JSON
from switchyard.providers.openai_compat import OpenAICompatProvider


class FireworksProvider(OpenAICompatProvider):
    type: ClassVar[str] = "fireworks"
    default_base_url: ClassVar[str | None] = "https://api.fireworks.ai/inference/v1"
    api_key_env: ClassVar[str | None] = "FIREWORKS_API_KEY"
    base_url_env: ClassVar[str | None] = "FIREWORKS_BASE_URL"
    embedding_dropped_fields: ClassVar[frozenset[str]] = frozenset({"user"})

    def classify_model(self, entry: JSON) -> ModelType | None:
        # Fireworks' list says ``kind``; embedding models have "EMBEDDING" in it.
        kind = entry.get("kind")
        if isinstance(kind, str) and "EMBEDDING" in kind.upper():
            return "embedding"
        return super().classify_model(entry)
