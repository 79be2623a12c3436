"""What a finished chat completion looks like to whoever keeps it (the inference store).

Its own module so that the store depends on neither the server nor the providers.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

# A finished call as the handler hands it over: the bytes it already has, in one flat
# tuple. (request JSON as the client sent it, the answer JSON as the client got it or a
# stream's chunks (a JSON array of them, those that only add text as their text; or its
# SSE events), provider id, started, finished (time.time()), the provider's completion
# id, streamed, caller, our completion id: the id the client got, and ``checked``: the
# handler serialised the answer itself under that id (from a plain dict: a JSON
# object; a stream: the tap's JSON array of its chunks), and the writer stores it
# without parsing it again; a stream's array is assembled when read.)
Record = tuple[bytes, bytes, str, float, float, str | None, bool, str | None, str, bool]


@dataclass(slots=True)
class StoredCall:
    """A finished chat completion in parsed forms, for callers that have no
    :data:`Record`'s bytes (tests, plugins).

    ``request`` and ``completion`` may be bytes or dicts, a stream may be given as its
    ``chunks``; the store serialises them once. A whole answer is stored under the id
    inside it (the one the client got); as the very bytes given when that id is
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

    def hand_over(self, record: Record) -> Awaitable[None] | None:
        """Queue ``record``; must not raise. None when the answer need not wait for
        it, else what to await before answering (``durability: sync``)."""
        ...

    async def completion_finished(self, call: StoredCall) -> None:
        """Queue (or, with sync durability, write) the call; must not raise."""
        ...

    async def close(self) -> None:
        """Flush what is queued, then release the database."""
        ...
