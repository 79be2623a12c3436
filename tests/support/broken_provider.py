"""A plugin provider (loaded by import path) whose model listing has a bug."""

from __future__ import annotations

from switchyard.providers.base import ModelInfo
from switchyard.providers.openai_compat import OpenAICompatProvider


class BrokenListingProvider(OpenAICompatProvider):
    async def list_models(self) -> list[ModelInfo]:
        raise RuntimeError("plugin bug while listing")
