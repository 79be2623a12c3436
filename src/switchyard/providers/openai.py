"""OpenAI itself: the reference the others imitate, so almost no quirks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.providers.base import JSON
from switchyard.providers.openai_compat import OpenAICompatProvider


class OpenAIProvider(OpenAICompatProvider):
    """Its /models lists every model of the account. Not listed here: image, video,
    speech, transcription, realtime and moderation models, and those OpenAI serves only
    through its Responses API (o1-pro, o3-pro, gpt-5-pro and later -pro models, the codex
    models, computer-use-preview), which /v1/chat/completions refuses with a 404. The
    audio-in-chat ones (gpt-4o-audio-preview, gpt-audio) and the search ones
    (gpt-4o-search-preview, gpt-5-search-api) are chat models and stay."""

    type: ClassVar[str] = "openai"
    repeats_role: ClassVar[bool] = False  # a choice's role in its first delta only
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    unserved_models: ClassVar[re.Pattern[str] | None] = re.compile(
        r"^(dall-e|gpt-image|chatgpt-image|tts-|whisper|omni-moderation|text-moderation|sora)"
        r"|transcribe|-tts|realtime"
        r"|^(o\d+|gpt-[\d.]+)-pro\b|codex|^computer-use"
    )

    def serves(self, entry: JSON) -> bool:
        # A fine-tune (ft:gpt-4o-mini-2024-07-18:acme:realtime-support:AbC1) is judged by
        # its base model: the rest of its id is the owner's words.
        model_id = str(entry["id"])
        if model_id.startswith("ft:"):
            model_id = model_id.split(":", 2)[1]
        return not self.unserved(model_id)

    # OpenAI's /models says nothing of dimensions; these are from its documentation.
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "text-embedding-3-small": {"embedding_dimension": 1536, "context_length": 8191},
        "text-embedding-3-large": {"embedding_dimension": 3072, "context_length": 8191},
        "text-embedding-ada-002": {"embedding_dimension": 1536, "context_length": 8191},
    }
