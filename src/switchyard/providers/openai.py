"""OpenAI itself: the reference the others imitate, so almost no quirks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.providers.openai_compat import OpenAICompatProvider


class OpenAIProvider(OpenAICompatProvider):
    type: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    # OpenAI's /models says nothing of dimensions; these are from its documentation.
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "text-embedding-3-small": {"embedding_dimension": 1536, "context_length": 8191},
        "text-embedding-3-large": {"embedding_dimension": 3072, "context_length": 8191},
        "text-embedding-ada-002": {"embedding_dimension": 1536, "context_length": 8191},
    }
