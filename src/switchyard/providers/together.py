"""Together AI: a bare-list ``/models`` with model types, and fussy embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.config import ModelType
from switchyard.providers.base import JSON
from switchyard.providers.openai_compat import OpenAICompatProvider

# Together's ``type`` field; anything else (image, audio, rerank, moderation...) is
# neither a chat nor an embedding model and is left out of the listing.
_TYPES: Mapping[str, ModelType] = {
    "chat": "llm",
    "language": "llm",
    "code": "llm",
    "embedding": "embedding",
}


class TogetherProvider(OpenAICompatProvider):
    type: ClassVar[str] = "together"
    default_base_url: ClassVar[str | None] = "https://api.together.xyz/v1"
    api_key_env: ClassVar[str | None] = "TOGETHER_API_KEY"
    base_url_env: ClassVar[str | None] = "TOGETHER_BASE_URL"
    stream_max_n: ClassVar[int | None] = 1
    embedding_dropped_fields: ClassVar[frozenset[str]] = frozenset({"user"})
    embedding_refused_fields: ClassVar[frozenset[str]] = frozenset({"dimensions"})
    # The list carries no dimensions, so they are kept here.
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "togethercomputer/m2-bert-80M-32k-retrieval": {
            "embedding_dimension": 768,
            "context_length": 32768,
        },
        "togethercomputer/m2-bert-80M-8k-retrieval": {
            "embedding_dimension": 768,
            "context_length": 8192,
        },
        "BAAI/bge-large-en-v1.5": {"embedding_dimension": 1024, "context_length": 512},
        "BAAI/bge-base-en-v1.5": {"embedding_dimension": 768, "context_length": 512},
        "intfloat/multilingual-e5-large-instruct": {
            "embedding_dimension": 1024,
            "context_length": 514,
        },
    }

    def parse_model_list(self, payload: Any) -> list[Any]:
        models = super().parse_model_list(payload)
        if isinstance(payload, list):
            # Only the bare-list form carries types we trust to filter on.
            kinds = {str(e.get("id")): e.get("type") for e in payload if isinstance(e, dict)}
            models = [m for m in models if kinds.get(m.provider_model_id) in _TYPES]
        return models

    def classify_model(self, entry: JSON) -> ModelType | None:
        kind = entry.get("type")
        if isinstance(kind, str) and kind in _TYPES:
            return _TYPES[kind]
        return super().classify_model(entry)
