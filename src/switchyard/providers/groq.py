"""Groq: chat only (no legacy completions) and one choice per request."""

from __future__ import annotations

from typing import ClassVar

from switchyard.providers.openai_compat import OpenAICompatProvider


class GroqProvider(OpenAICompatProvider):
    type: ClassVar[str] = "groq"
    default_base_url: ClassVar[str | None] = "https://api.groq.com/openai/v1"
    api_key_env: ClassVar[str | None] = "GROQ_API_KEY"
    base_url_env: ClassVar[str | None] = "GROQ_BASE_URL"
    supports_completions: ClassVar[bool] = False
    max_n: ClassVar[int | None] = 1
