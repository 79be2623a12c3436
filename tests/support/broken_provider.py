"""A plugin provider (loaded by import path) whose model listing has a bug."""

from __future__ import annotations

from switchyard.providers.base import ModelInfo
from switchyard.providers.openai_compat import OpenAICompatProvider


class BrokenListingProvider(OpenAICompatProvider):
    async def list_models(self) -> list[ModelInfo]:
        raise RuntimeError("plugin bug while listing")


class DownAtFirstProvider(OpenAICompatProvider):
    """Fails to list its models the first ``failures`` times (a provider that starts
    after Switchyard), then lists one."""

    failures = 2

    async def list_models(self) -> list[ModelInfo]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("connection refused")
        return [ModelInfo(provider_model_id="late-model", model_type="llm")]
