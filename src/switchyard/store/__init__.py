"""The inference store: every chat completion kept, listed and retrieved."""

from __future__ import annotations

from switchyard.config import Config
from switchyard.server.state import CompletionSink


async def open_sink(config: Config) -> CompletionSink | None:
    """The store for ``config``, opened (migrations run), or None when it is off."""
    return None
