"""What a finished chat completion looks like to whoever keeps it (the inference store).

Its own module so that the store depends on neither the server nor the providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class StoredCall:
    """A finished chat completion as the handler hands it to the store.

    The handler passes what it already has as bytes: the ``request`` as the client
    sent it, and the ``completion`` JSON the client got or, for a stream, its SSE
    ``events`` (already carrying our id). Parsed forms (dicts, a stream's ``chunks``)
    are accepted too; the store serialises them once. A whole answer is stored under
    the id inside it (the one the client got); as the very bytes given when that id is
    ``completion_id``.
    """

    request: dict[str, Any] | bytes
    provider_id: str
    started: float
    finished: float
    completion: dict[str, Any] | bytes | None = None
    chunks: list[dict[str, Any]] | None = None
    provider_completion_id: str | None = None
    caller: str | None = None
    events: bytes | None = None
    completion_id: str | None = None  # ours, the id the client got


class CompletionSink(Protocol):
    """Receives every finished chat completion (the inference store implements it)."""

    def should_store(self, body: dict[str, Any]) -> bool: ...

    async def completion_finished(self, call: StoredCall) -> None:
        """Queue (or, with sync durability, write) the call; must not raise."""
        ...

    async def close(self) -> None:
        """Flush what is queued, then release the database."""
        ...
