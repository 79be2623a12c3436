"""What every provider offers the server: the :class:`Provider` protocol and model types.

Bodies travel as plain dicts parsed once from the client's JSON: known fields are
validated by the server, unknown ones pass through to the provider untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.config import ModelType, ProviderConfig
from switchyard.errors import ConfigError

JSON = dict[str, Any]


@dataclass(slots=True)
class ModelInfo:
    """A model as a provider lists it (before it gets its Switchyard id)."""

    provider_model_id: str
    # None: the listing does not say (listed as "llm"; both endpoints may try it).
    model_type: ModelType | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created: int = 0
    owned_by: str = ""


@dataclass(slots=True)
class ModelEntry:
    """A model as clients see it: ``id`` is usually ``provider_id/provider_model_id``."""

    id: str
    provider_id: str
    provider_model_id: str
    model_type: ModelType | None  # None: unknown (routed by prefix, or listed without one)
    metadata: dict[str, Any] = field(default_factory=dict)
    created: int = 0
    owned_by: str = ""
    source: str = "discovered"  # "config" | "discovered" | "prefix"

    def to_openai(self) -> JSON:
        """OpenAI's model object plus the fields Llama Stack's clients read (its list
        reads ``custom_metadata``; its retrieve reads the top-level resource fields)."""
        model_type = self.model_type or "llm"
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by or self.provider_id,
            "identifier": self.id,
            "provider_id": self.provider_id,
            "provider_resource_id": self.provider_model_id,
            "model_type": model_type,
            "metadata": self.metadata,
            "custom_metadata": {
                "model_type": model_type,
                "provider_id": self.provider_id,
                "provider_resource_id": self.provider_model_id,
                **self.metadata,
            },
        }


def check_options(config: ProviderConfig, known: frozenset[str]) -> None:
    """Refuse ``options`` the provider's type does not read: the rest of the config
    refuses unknown keys, so a misspelt or misplaced option fails at start too. (A
    plugin's class names the options it reads in ``known_options``.)"""
    unknown = sorted(config.options.keys() - known)
    if unknown:
        reads = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"provider '{config.id}' (type {config.type}) does not read the options "
            f"{', '.join(unknown)} (it reads: {reads}); remove them, or, for a provider "
            "class of your own, name them in its known_options"
        )


class Provider(Protocol):
    """A configured provider instance. ``chat`` & co. get the client's body with
    ``model`` already replaced by the provider's own model id."""

    id: str
    type: str
    inline: bool  # runs in the server process (no upstream); shown as inline:: in /providers
    config: ProviderConfig

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def chat(self, body: JSON) -> JSON: ...

    async def chat_stream(self, body: JSON) -> AsyncIterator[list[JSON]]:
        """Sends the request and checks its status, so that a refusal is raised before
        the client sees a byte; then returns the chunks, a list of those that arrived
        together at a time (a provider yielding one chunk at a time still works)."""
        ...

    async def completions(self, body: JSON) -> JSON: ...

    async def completions_stream(self, body: JSON) -> AsyncIterator[list[JSON]]: ...

    async def embeddings(self, body: JSON) -> JSON: ...

    def describe(self) -> JSON: ...
