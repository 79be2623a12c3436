"""Relaying a provider's chunks as SSE (``server/stream.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from switchyard import metrics
from switchyard.server import stream
from switchyard.server.stream import DONE_EVENT, Tap, relay

OURS = {"id": "chatcmpl-ours", "model": "up/m"}


def chunk(n: int) -> dict[str, Any]:
    return {"id": "up-1", "model": "m", "choices": [{"index": 0, "delta": {"content": str(n)}}]}


def event(n: int) -> bytes:
    return b"data: " + orjson.dumps({**chunk(n), **OURS}) + b"\n\n"


async def reads(*batches: Any) -> AsyncIterator[Any]:
    for batch in batches:
        yield batch


async def relayed(chunks: AsyncIterator[Any], tap: Tap | None = None) -> list[bytes]:
    return [piece async for piece in relay(chunks, dict(OURS), tap)]


async def test_the_chunks_of_one_read_go_out_as_one_piece() -> None:
    tap = Tap()
    pieces = await relayed(reads([chunk(1), chunk(2)], [], [chunk(3)]), tap)
    assert pieces == [event(1) + event(2), event(3), DONE_EVENT]
    # What the store gets: the very chunks the events carried, as one JSON array.
    answer = tap.answer()
    assert answer is not None
    assert orjson.loads(answer) == [{**chunk(n), **OURS} for n in (1, 2, 3)]
    assert tap.provider_completion_id == "up-1"


async def test_a_provider_yielding_one_chunk_at_a_time_is_relayed_too() -> None:
    # A plugin provider written before streams came in lists.
    pieces = await relayed(reads(chunk(1), chunk(2)))
    assert pieces == [event(1), event(2), DONE_EVENT]


async def test_an_empty_batch_that_is_not_a_list_makes_no_event() -> None:
    # A plugin provider yielding a generator that turns out empty: nothing is sent.
    pieces = await relayed(reads((c for c in ()), [chunk(1)]))
    assert pieces == [b"", event(1), DONE_EVENT]


async def test_a_stream_past_what_the_store_keeps_is_relayed_whole_and_not_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "MAX_KEPT", len(event(1)) * 3)  # about three chunks
    dropped = metrics.STORE_DROPPED._value.get()
    tap = Tap()
    pieces = await relayed(reads(*[[chunk(n)] for n in range(10)]), tap)
    assert pieces == [*(event(n) for n in range(10)), DONE_EVENT]
    assert tap.chunks is None  # let go of, not held to the end
    assert tap.answer() is None
    assert metrics.STORE_DROPPED._value.get() == dropped + 1
