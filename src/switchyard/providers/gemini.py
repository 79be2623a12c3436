"""Google Gemini through its OpenAI-compatible API: chat only (no legacy completions)
and one choice per request."""

from __future__ import annotations

from typing import ClassVar

from switchyard.providers.openai_compat import OpenAICompatProvider


class GeminiProvider(OpenAICompatProvider):
    type: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str | None] = (
        "https://generativelanguage.googleapis.com/v1beta/openai"
    )
    api_key_env: ClassVar[str | None] = "GEMINI_API_KEY"
    base_url_env: ClassVar[str | None] = "GEMINI_BASE_URL"
    supports_completions: ClassVar[bool] = False
    max_n: ClassVar[int | None] = 1
