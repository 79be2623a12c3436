"""What the request handlers share within one worker process."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.config import Config
from switchyard.providers.base import Provider
from switchyard.registry import ModelRegistry
from switchyard.sink import CompletionSink, StoredCall

__all__ = ["AppState", "CompletionSink", "StoredCall"]


@dataclass(slots=True)
class AppState:
    config: Config
    providers: dict[str, Provider]
    registry: ModelRegistry
    sink: CompletionSink | None = None
