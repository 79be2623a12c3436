"""Fireworks AI: embeddings refuse ``user``; its list says a model's ``kind``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.config import ModelType
from switchyard.providers.base import JSON
from switchyard.providers.openai_compat import OpenAICompatProvider


class FireworksProvider(OpenAICompatProvider):
    type: ClassVar[str] = "fireworks"
    repeats_role: ClassVar[bool] = False  # a choice's role in its first delta only
    default_base_url: ClassVar[str | None] = "https://api.fireworks.ai/inference/v1"
    api_key_env: ClassVar[str | None] = "FIREWORKS_API_KEY"
    base_url_env: ClassVar[str | None] = "FIREWORKS_BASE_URL"
    embedding_dropped_fields: ClassVar[frozenset[str]] = frozenset({"user"})
    # Its list gives an embedding model's context_length but not its dimension.
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "accounts/fireworks/models/qwen3-embedding-8b": {"embedding_dimension": 4096},
        "nomic-ai/nomic-embed-text-v1.5": {"embedding_dimension": 768},
    }

    def serves(self, entry: JSON) -> bool:
        # Its image models (FLUX) are of kind FLUMINA_BASE_MODEL; most also say
        # supports_chat: false (no embedding model does, but a future one might).
        kind = entry.get("kind")
        if isinstance(kind, str) and kind.upper().startswith("FLUMINA"):
            return False
        return entry.get("supports_chat") is not False or self.classify_model(entry) == "embedding"

    def classify_model(self, entry: JSON) -> ModelType | None:
        # Fireworks' list has a ``kind``; an embedding model's may say so (its listed
        # qwen3-embedding-8b is an HF_BASE_MODEL: the table and the name tell that one).
        kind = entry.get("kind")
        if isinstance(kind, str) and "EMBEDDING" in kind.upper():
            return "embedding"
        return super().classify_model(entry)
