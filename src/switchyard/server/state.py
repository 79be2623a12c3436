"""What the request handlers share within one worker process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.config import Config
from switchyard.providers.base import Provider
from switchyard.registry import ModelRegistry


@dataclass(slots=True)
class StoredCall:
    """A finished chat completion as the handler hands it to the store: either the
    whole ``completion`` or, for a stream, its ``chunks`` (already carrying our id)."""

    request: dict[str, Any]
    provider_id: str
    started: float
    finished: float
    completion: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None
    provider_completion_id: str | None = None
    caller: str | None = None


class CompletionSink(Protocol):
    """Receives every finished chat completion (the inference store implements it)."""

    def should_store(self, body: dict[str, Any]) -> bool: ...

    async def completion_finished(self, call: StoredCall) -> None:
        """Queue (or, with sync durability, write) the call; must not raise."""
        ...

    async def close(self) -> None:
        """Flush what is queued, then release the database."""
        ...


@dataclass(slots=True)
class AppState:
    config: Config
    providers: dict[str, Provider]
    registry: ModelRegistry
    sink: CompletionSink | None = None
    started_at: float = field(default_factory=time.time)
