"""Relaying a provider's chunks as SSE (``server/stream.py``)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from tests.support.recorded_upstream import exchanges_for

from switchyard import metrics
from switchyard.errors import UpstreamError, UpstreamTimeoutError
from switchyard.server import stream
from switchyard.server.stream import DONE_EVENT, Tap, relay
from switchyard.store.assemble import assemble

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
    # What the store gets: the chunks the events carried, as one JSON array; those
    # that only add text to what the chunk before them had, as their text.
    answer = tap.answer()
    assert answer is not None
    assert orjson.loads(answer) == [{**chunk(1), **OURS}, "2", "3"]
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
    # Each with a fingerprint of its own, so each is kept whole.
    chunks = [{**chunk(n), "system_fingerprint": str(n)} for n in range(10)]
    pieces = await relayed(reads(*[[c] for c in chunks]), tap)
    events = [b"data: " + orjson.dumps({**c, **OURS}) + b"\n\n" for c in chunks]
    assert pieces == [*events, DONE_EVENT]
    assert tap.chunks is None  # let go of, not held to the end
    assert tap.answer() is None
    assert metrics.STORE_DROPPED._value.get() == dropped + 1


def kept(chunks: list[dict[str, Any]], *, batch: int = 1) -> list[Any]:
    """What a tap keeps of ``chunks`` relayed ``batch`` at a time."""
    tap = Tap()
    for start in range(0, len(chunks), batch):
        stream._sse([dict(c) for c in chunks[start : start + batch]], dict(OURS), tap)
    answer = tap.answer()
    assert answer is not None
    kept: list[Any] = orjson.loads(answer)
    return kept


def sent(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**c, **OURS} for c in chunks]


def text_chunk(delta: dict[str, Any], **top: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    return {"object": "chat.completion.chunk", "created": 7, "choices": [choice], **top}


def test_a_stream_of_text_is_kept_as_its_texts_between_its_first_and_last_chunks() -> None:
    # OpenAI's shape: the role first, then text, then the finish with usage.
    last = text_chunk({}, usage={"total_tokens": 3})
    last["choices"][0]["finish_reason"] = "stop"
    chunks = [text_chunk({"role": "assistant", "content": ""})]
    chunks += [text_chunk({"content": t}, obfuscation=t * 3) for t in ("He", "llo", "")]
    chunks.append(last)
    for batch in (1, 2, 5):
        assert kept(chunks, batch=batch) == [sent(chunks)[0], "He", "llo", "", sent(chunks)[-1]]
    assert assemble(kept(chunks)) == assemble(sent(chunks))


def test_a_repeated_role_and_numbers_beside_the_text_are_left_out_after_the_role() -> None:
    # Ollama repeats the role in every delta; Together adds each token's id.
    chunks = [
        text_chunk({"role": "assistant", "content": t, "token_id": n, "refusal": None})
        for n, t in enumerate(("a", "b", "c"))
    ]
    assert kept(chunks) == [sent(chunks)[0], "b", "c"]
    # Before any chunk kept whole gave the role, a role is not left out.
    chunks = [text_chunk({"content": "a"}), text_chunk({"role": "tool", "content": "b"})]
    assert kept(chunks) == sent(chunks)
    assert assemble(kept(chunks))["choices"][0]["message"]["role"] == "tool"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"system_fingerprint": "fp_2"}, "a top-level field assemble() reads changed"),
        ({"usage": {"total_tokens": 1}}, "usage"),
        ({"usage": {}}, "any usage, even one equal to the last chunk's"),
        ({"created": 8}, "created"),
        ({"choices": [{"index": 1, "delta": {"content": "x"}}]}, "another choice"),
        ({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}, "end"),
        ({"choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {"content": []}}]}, ""),
        ({"choices": [{"index": 0, "delta": {"content": "x", "reasoning_content": "y"}}]}, ""),
        ({"choices": [{"index": 0, "delta": {"content": "x", "tool_calls": []}}]}, "a list"),
        ({"choices": [{"index": 0, "delta": {"refusal": "no"}}]}, "not content"),
        ({"choices": [{"index": 0, "delta": {"content": 5}}]}, "not a string"),
        ({"choices": [{"delta": {"content": "x"}}]}, "no index"),
        ({"choices": [{"index": 0, "delta": {"content": "x"}}, {"index": 1, "delta": {}}]}, "2"),
    ],
)
def test_a_chunk_that_adds_more_than_text_is_kept_whole(change: dict[str, Any], why: str) -> None:
    chunks = [text_chunk({"role": "assistant", "content": "a"})]
    chunks.append({**text_chunk({"content": "b"}), **change})  # text, but for the change
    assert kept(chunks) == sent(chunks), why
    # The same after a chunk kept as its text, in the same read or in the next.
    chunks.insert(1, text_chunk({"content": "t"}))
    for batch in (1, 3):
        assert kept(chunks, batch=batch) == [sent(chunks)[0], "t", sent(chunks)[2]], why


def recorded_streams() -> list[Any]:
    providers = ("azure", "bedrock", "cerebras", "databricks", "fireworks", "ollama")
    providers += ("openai", "tgi", "together", "vllm")
    return [
        pytest.param(e.events, id=e.source.rsplit("/", 2)[-2] + "/" + e.source.rsplit("/")[-1])
        for provider in providers
        for e in exchanges_for(provider)
        if e.is_stream and e.endpoint == "/v1/chat/completions"
    ]


RECORDED = recorded_streams()


@pytest.mark.parametrize("events", RECORDED)
def test_every_recorded_stream_is_stored_as_its_whole_chunks_would_be(events: list[Any]) -> None:
    chunks = [e for e in events if isinstance(e, dict)]
    assert assemble(kept(chunks, batch=3)) == assemble(sent(chunks))


def test_a_text_of_any_characters_is_kept_as_its_text() -> None:
    texts = ["plain", 'a "quoted" \\ back\\slash', "é\u2028\n\t", "", '}]"},']
    chunks = [text_chunk({"role": "assistant", "content": ""})]
    chunks += [text_chunk({"content": t}) for t in texts]
    assert kept(chunks, batch=2) == [sent(chunks)[0], *texts]


def test_after_a_text_a_chunk_that_adds_more_is_kept_whole() -> None:
    # Each after a text, with the same bytes before and after its own text.
    role = text_chunk({"role": "assistant", "content": ""}, system_fingerprint="1")
    text = text_chunk({"content": "t"}, system_fingerprint="1")
    # More in the delta than its text, in the same bytes before and after the text.
    for more in ({"reasoning_content": "r"}, {"tool_calls": []}, {"refusal": "no"}):
        chunks = [role, text, text_chunk({"content": "x", **more}, system_fingerprint="1")]
        assert kept(chunks) == [sent(chunks)[0], "t", sent(chunks)[2]], more
    # More after the text, and the same bytes at the end: another choice, or a finish
    # and logprobs after a delta that ended the last text's choice.
    for chunks in (
        [role, text, {**text, "choices": [*text["choices"], {"index": 1, "delta": {}}]}],
        [
            role,
            bare := {**text, "choices": [{"index": 0, "delta": {"content": "t"}}]},
            {**bare, "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {}}]},
        ],
    ):
        assert kept(chunks) == [sent(chunks)[0], "t", sent(chunks)[2]]
    # A plugin's content written as raw JSON, the same bytes as a text and a field more.
    fragment = orjson.Fragment(b'"x","refusal":"r"')
    chunks = [role, text, text_chunk({"content": fragment}, system_fingerprint="1")]
    stored = kept(chunks)
    assert stored[:2] == [sent(chunks)[0], "t"] and stored[2]["choices"][0]["delta"]["refusal"]
    # A look-alike object before the choices, holding a delta with the same text, and
    # then a usage put between it and another look-alike.
    same = "t" * 56
    look = {
        "x": {"delta": {"content": same}},
        **text_chunk({"content": same}, system_fingerprint="1"),
    }
    usage = {"x": {"delta": {"content": "a"}}, "usage": {"total_tokens": 9}}
    usage |= {
        "z": {"delta": {"content": ""}},
        **text_chunk({"content": same}, system_fingerprint="1"),
    }
    chunks = [role | {"x": {}}, look, usage]
    assert kept(chunks)[1:] == [same, sent(chunks)[2]]
    # A chunk kept whole for its new fingerprint: a later text with the old one,
    # bytes for bytes the text before, is kept whole as well.
    chunks = [role, text, text_chunk({"content": "a"}, system_fingerprint="2"), text]
    for batch in (1, 2, 4):  # the last two in one read, or all four
        assert kept(chunks, batch=batch) == [sent(chunks)[0], "t", *sent(chunks)[2:]]


TEXTS = ["t", "", "é", 'a"b', "\\", "\n", "\u2028", '"},', '"delta":{"content":"', "😀"]


def random_stream(r: random.Random) -> list[dict[str, Any]]:
    """Chunks of one random shape, as providers vary it: key orders, fields that change
    or appear, more in a delta or a choice, more choices, look-alike objects."""
    top = ["id", "created", "model", "system_fingerprint", "service_tier", "usage", "choices"]
    r.shuffle(top)
    top = [k for k in top if k == "choices" or r.random() < 0.8]
    in_choice = ["index", "delta", "logprobs", "finish_reason"][: r.randint(2, 4)]
    r.shuffle(in_choice)
    usual = {"id": "up", "created": 7, "model": "m", "system_fingerprint": "fp"}
    usual |= {"service_tier": "default", "usage": None}
    odd = {"created": 8, "system_fingerprint": 0.0, "service_tier": "flex", "usage": {}}
    chunks = []
    for n in range(r.randint(2, 10)):
        delta: dict[str, Any] = {"content": "".join(r.choices(TEXTS, k=r.randint(0, 3)))}
        if n == 0 or r.random() < 0.05:
            delta[r.choice(["role", "reasoning_content", "refusal", "token_id"])] = "assistant"
        fields = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        choice = {k: fields[k] for k in in_choice}
        if r.random() < 0.05:
            choice[r.choice(["logprobs", "finish_reason", "x"])] = r.choice([{}, "stop"])
        chunk = {k: odd.get(k, "?") if r.random() < 0.03 else usual.get(k) for k in top}
        chunk["choices"] = [choice] + [{"index": 1, "delta": {}}] * (r.random() < 0.05)
        if r.random() < 0.05:  # a look-alike object, before the choices or after
            look = {"x": {"delta": {"content": r.choice(TEXTS)}}}
            chunk = {**look, **chunk} if r.random() < 0.5 else {**chunk, **look}
        chunks.append(chunk)
    return chunks


def test_random_streams_are_stored_as_their_whole_chunks_would_be() -> None:
    r = random.Random(69)
    texts = 0
    for _ in range(3000):
        chunks, batch = random_stream(r), r.randint(1, 4)
        stored = kept(chunks, batch=batch)
        assert assemble(stored) == assemble(sent(chunks)), chunks
        texts += sum(type(piece) is str for piece in stored)
    assert texts > 3000  # not vacuous: many chunks were kept as their text


@dataclass
class Choice:  # a plugin provider's own type: orjson writes it as the dict it mirrors
    index: int
    delta: dict[str, Any]
    logprobs: None = None
    finish_reason: None = None


def test_a_chunk_of_other_types_with_the_same_bytes_is_relayed_and_kept() -> None:
    role = text_chunk({"role": "assistant", "content": ""})
    chunks = [role, text_chunk({"content": "t"})]
    chunks.append({**text_chunk({}), "choices": [Choice(0, {"content": "a"})]})
    chunks.append({**text_chunk({}), "choices": ({"index": 0, "delta": {"content": "b"}},)})
    chunks[-1]["choices"][0].update(logprobs=None, finish_reason=None)
    stored = kept(chunks)
    assert stored[:3] == [sent(chunks)[0], "t", orjson.loads(orjson.dumps(sent(chunks)[2]))]
    assert assemble(stored)["choices"][0]["message"]["content"] == "tab"


def test_the_recorded_streams_are_mostly_kept_as_texts() -> None:
    # Not a vacuous comparison above: most of their chunks are kept as text.
    pieces = [p for events in RECORDED for p in kept([e for e in events.values[0]])]
    assert len(RECORDED) > 100
    assert sum(isinstance(p, str) for p in pieces) > len(pieces) / 2


def test_without_our_id_and_model_in_every_chunk_each_is_kept_whole() -> None:
    # Azure's first chunk has an empty id: the stream's id is then the next chunk's,
    # which only the chat handler's overrides make the same in every chunk.
    chunks = [
        text_chunk({"role": "assistant", "content": ""}, id="", model=""),
        text_chunk({"content": "a"}, id="up-2", model="m"),
    ]
    tap = Tap()
    stream._sse([dict(c) for c in chunks], {}, tap)
    answer = tap.answer()
    assert answer is not None
    assert orjson.loads(answer) == chunks
    assert assemble(orjson.loads(answer))["id"] == "up-2"


def test_a_fingerprint_equal_in_python_but_not_in_json_is_kept_whole() -> None:
    # 0, 0.0 and False are equal in Python; the last one is the one stored.
    chunks = [
        text_chunk({"role": "assistant", "content": "a"}, system_fingerprint=0),
        text_chunk({"content": "b"}, system_fingerprint=0.0),
        text_chunk({"content": "c"}, system_fingerprint=0.0),
    ]
    assert kept(chunks) == sent(chunks)
    assert assemble(kept(chunks))["system_fingerprint"] == 0.0


async def test_texts_count_against_what_the_store_keeps_as_their_whole_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A provider looping on empty texts: each kept as "" still counts as its chunk.
    looping = [text_chunk({"role": "assistant", "content": ""})]
    looping += [text_chunk({"content": ""}) for _ in range(20)]
    size = sum(len(orjson.dumps({**c, **OURS})) for c in looping)
    monkeypatch.setattr(stream, "MAX_KEPT", size - 1)
    tap = Tap()
    await relayed(reads(*[[dict(c)] for c in looping]), tap)
    assert tap.answer() is None


def test_a_stream_of_text_is_stored_as_its_chunks_one_of_many_whole_chunks_is_not() -> None:
    # Reasoning (or tool calls, logprobs, several choices) is kept whole, ~250 bytes a
    # token: such a stream is handed to the writer to be assembled, not kept as chunks.
    def tapped(deltas: list[dict[str, Any]]) -> Tap:
        tap = Tap()
        stream._sse([text_chunk(d) for d in deltas], dict(OURS), tap)
        return tap

    role = {"role": "assistant", "content": ""}
    text = tapped([role] + [{"content": "a"}] * 100)
    assert text.whole == 1 and text.stored_as_chunks()
    edge = tapped([role] + [{"reasoning_content": "r"}] * (stream.MAX_WHOLE_STORED - 1))
    assert edge.whole == stream.MAX_WHOLE_STORED and edge.stored_as_chunks()
    reasoning = tapped([role] + [{"reasoning_content": "r"}] * stream.MAX_WHOLE_STORED)
    assert not reasoning.stored_as_chunks()


async def _failing(failure: Exception) -> AsyncIterator[list[dict[str, Any]]]:
    yield [chunk(1)]
    raise failure


async def test_a_provider_failure_that_ends_a_stream_is_counted_as_an_answer_refused_is() -> None:
    # Once a stream has begun its failure is an event, not an error answer: it must
    # still reach switchyard_upstream_errors_total, by provider and kind.
    def counted(kind: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "switchyard_upstream_errors_total", {"provider": "up", "kind": kind}
        )
        return value or 0.0

    for failure in (
        UpstreamError("cut", provider_id="up"),
        UpstreamTimeoutError("silent", provider_id="up"),
    ):
        before = counted(failure.error_type)

        events = [piece async for piece in relay(_failing(failure), dict(OURS))]
        assert events[0] == event(1)
        assert orjson.loads(events[-1][6:])["error"]["type"] == failure.error_type
        assert counted(failure.error_type) == before + 1
