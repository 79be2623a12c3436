"""vLLM's OpenAI-compatible server: serves one model, takes extensions such as
``guided_choice`` and ``prompt_logprobs`` (they pass through as unknown fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from switchyard.config import ProviderConfig
from switchyard.providers.openai_compat import OpenAICompatProvider


class VLLMProvider(OpenAICompatProvider):
    type: ClassVar[str] = "vllm"
    repeats_role: ClassVar[bool] = False  # a choice's role in its first delta only

    @classmethod
    def env_base_url(cls, env: Mapping[str, str]) -> str | None:
        return env.get("VLLM_URL") or None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderConfig | None:
        base_url = cls.env_base_url(env)
        if not base_url:
            return None
        token = env.get("VLLM_API_TOKEN") or None
        return ProviderConfig(id=cls.type, type=cls.type, base_url=base_url, api_key=token)
