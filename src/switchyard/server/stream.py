"""Relaying a provider's chunks to the client as Server-Sent Events.

Each chunk is parsed once (by the provider), gets the client's model id (and our
completion id), and is written as soon as it arrives: nothing is buffered. Chunks that
arrive together (one read from the provider) are written together. An error
after the first byte cannot change the status any more, so it becomes one final
``data: {"error": ...}`` event, which the openai SDK raises as an APIError.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from switchyard.errors import SwitchyardError
from switchyard.metrics import STORE_DROPPED, STREAMS_NOT_STORED

log = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]\n\n"


# The most of a stream the store keeps: its chunks' JSON. 128K tokens of text (any
# model's longest answer) take ~40 MB; a provider stuck in a loop could send without end.
MAX_KEPT = 128 * 1024 * 1024


class Tap:
    """What the store keeps of a stream as it passes: the JSON of each chunk the client
    was sent (None once past MAX_KEPT: the stream is relayed but not stored), and the
    provider's own id for the completion (from its first chunk)."""

    __slots__ = ("chunks", "kept", "provider_completion_id")

    def __init__(self) -> None:
        self.chunks: list[bytes] | None = []
        self.kept = 0
        self.provider_completion_id: Any = None

    def keep(self, dumped: list[bytes]) -> None:
        if self.chunks is None:
            return
        self.kept += sum(map(len, dumped))
        if self.kept <= MAX_KEPT:
            self.chunks.extend(dumped)
            return
        self.chunks = None
        STORE_DROPPED.inc()
        log.warning("a stream passed %d MiB: relayed on, but not stored", MAX_KEPT // 2**20)

    def answer(self) -> bytes | None:
        """The chunks as one JSON array: what the store's writer parses in one call,
        with no SSE framing to take apart (bench/NOTES.md, section 37). None for a
        stream too large to keep."""
        if self.chunks is None:
            return None
        return b"[" + b",".join(self.chunks) + b"]"


async def relay(
    chunks: AsyncIterator[list[dict[str, Any]]] | AsyncIterator[dict[str, Any]],
    overrides: dict[str, Any],
    tap: Tap | None = None,
    on_complete: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """SSE bytes for ``chunks``. ``on_complete`` runs after the last chunk and before
    ``[DONE]``, so a store that writes synchronously has the row before the client
    hears the stream is over."""
    completed = False
    try:
        async for batch in chunks:
            # A dict: a plugin provider written for one chunk at a time.
            if batch:
                yield _sse([batch] if isinstance(batch, dict) else batch, overrides, tap)
        if on_complete is not None:
            await on_complete()
        completed = True
        yield DONE_EVENT
    except SwitchyardError as err:
        log.warning("stream ended by an error: %s", err.message)
        yield b"data: " + err.to_json() + b"\n\n"
    except Exception:  # a bug must still end the stream in OpenAI's shape
        log.exception("stream failed")
        failure = SwitchyardError("The stream failed inside Switchyard; see its log.")
        yield b"data: " + failure.to_json() + b"\n\n"
    finally:
        if on_complete is not None and not completed:
            STREAMS_NOT_STORED.inc()  # counted, so that nothing goes unrecorded silently
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()


def _sse(chunks: list[dict[str, Any]], overrides: dict[str, Any], tap: Tap | None) -> bytes:
    """The SSE events of chunks that arrived together, as one piece."""
    dumped = []
    for chunk in chunks:
        if tap is not None and not tap.provider_completion_id:
            # The first id given (Azure's first chunk has an empty one), before ours.
            tap.provider_completion_id = chunk.get("id")
        chunk.update(overrides)
        dumped.append(orjson.dumps(chunk))
    if not dumped:  # a plugin's empty batch (say, a generator): no event at all
        return b""
    if tap is not None:
        tap.keep(dumped)
    return b"data: " + b"\n\ndata: ".join(dumped) + b"\n\n"
