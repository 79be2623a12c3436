"""Ollama through its OpenAI-compatible ``/v1`` API.

It ignores ``n`` (so n > 1 is refused rather than silently answered with one choice)
and returns floats when asked for base64 (the shared adapter encodes those).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from switchyard.config import ProviderConfig
from switchyard.providers.openai_compat import OpenAICompatProvider


class OllamaProvider(OpenAICompatProvider):
    type: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str | None] = "http://localhost:11434/v1"
    max_n: ClassVar[int | None] = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderConfig | None:
        # OLLAMA_URL is Ollama's root (http://host:11434); its OpenAI API is below /v1.
        root = env.get("OLLAMA_URL")
        if not root:
            return None
        return ProviderConfig(id=cls.type, type=cls.type, base_url=root.rstrip("/") + "/v1")
