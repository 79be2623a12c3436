"""Google Gemini through its OpenAI-compatible API: chat only (no legacy completions)
and one choice per request; its list names models ``models/gemini-2.5-flash``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from switchyard.providers.base import ModelInfo
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
    # Image, video and music generation, speech, the Live API's audio models, AQA.
    unserved_models: ClassVar[re.Pattern[str] | None] = re.compile(
        r"^(models/)?(imagen|veo|lyria|aqa)\b|-tts\b|-live\b|live-|native-audio"
    )

    def spellings(self, name: str) -> tuple[str, ...]:
        # Llama Stack's configs name models as Google lists them (models/gemini-2.5-flash);
        # users and the listing below, bare.
        bare = name.removeprefix("models/")
        return bare, f"models/{bare}"

    def parse_model_list(self, payload: Any) -> list[ModelInfo]:
        # Listed as Google's resource name; its chat takes the bare name, which is what
        # users write (gemini/gemini-2.5-flash, allowed_models: [gemini-2.5-flash]).
        models = super().parse_model_list(payload)
        for model in models:
            model.provider_model_id = model.provider_model_id.removeprefix("models/")
        return models
