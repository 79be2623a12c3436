"""Streams rebuilt into whole completions: content, tool calls, choices, logprobs, usage."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from tests.support import fake_openai
from tests.support.recorded_upstream import recordings_root

from switchyard.recording.llama_stack import load_exchange
from switchyard.store.assemble import assemble


def chunk(choices: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 7, "model": "m"} | {
        "choices": choices,
        **top,
    }


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}


def test_content_role_finish_usage_and_identity() -> None:
    chunks = [
        chunk([delta(role="assistant", content="")]),
        chunk([delta(content="Hel")]),
        chunk([delta(content="lo")], system_fingerprint="fp_1"),
        chunk([delta(finish="stop")]),
        chunk([], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ]
    result = assemble(chunks)
    assert result["id"] == "chatcmpl-x"
    assert result["object"] == "chat.completion"
    assert (result["created"], result["model"]) == (7, "m")
    assert result["system_fingerprint"] == "fp_1"
    assert result["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


def test_tool_calls_rebuilt_from_interleaved_deltas_by_index() -> None:
    def call(i: int, **fields: Any) -> dict[str, Any]:
        return {"index": i, **fields}

    chunks = [
        chunk([delta(role="assistant", content=None)]),
        chunk([delta(tool_calls=[call(0, id="a", type="function", function={"name": "f"})])]),
        chunk([delta(tool_calls=[call(1, id="b", type="function", function={"name": "g"})])]),
        chunk([delta(tool_calls=[call(0, function={"arguments": '{"x":'})])]),
        chunk([delta(tool_calls=[call(1, function={"arguments": "{}"})])]),
        chunk([delta(tool_calls=[call(0, id=None, type=None, function={"arguments": " 1}"})])]),
        chunk([delta(finish="tool_calls")]),
    ]
    message = assemble(chunks)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    assert assemble(chunks)["choices"][0]["finish_reason"] == "tool_calls"


def test_whole_tool_calls_without_an_index_stay_apart() -> None:
    # Gemini's OpenAI-compatible stream: each call whole, in a chunk of its own, no index.
    def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
        function = {"name": name, "arguments": arguments}
        return {"id": call_id, "type": "function", "function": function}

    chunks = [
        chunk(
            [delta(role="assistant", tool_calls=[call("call_A", "weather", '{"city":"Paris"}')])]
        ),
        chunk([delta(tool_calls=[call("call_B", "time", "{}")])]),
        chunk([delta(tool_calls=[call("call_C", "date", "{}")], finish="tool_calls")]),
    ]
    assert assemble(chunks)["choices"][0]["message"]["tool_calls"] == [
        call("call_A", "weather", '{"city":"Paris"}'),
        call("call_B", "time", "{}"),
        call("call_C", "date", "{}"),
    ]


def test_several_choices_by_index_and_their_logprobs() -> None:
    def lp(token: str) -> dict[str, Any]:
        return {"content": [{"token": token, "logprob": -1.0, "top_logprobs": []}]}

    chunks = [
        chunk([delta(0, role="assistant", content="a"), delta(1, role="assistant", content="x")]),
        chunk([{**delta(1, content="y"), "logprobs": lp("y")}]),
        chunk([{**delta(0, content="b"), "logprobs": lp("b")}]),
        chunk([delta(0, finish="stop"), delta(1, finish="length")]),
    ]
    choices = assemble(chunks)["choices"]
    assert [c["message"]["content"] for c in choices] == ["ab", "xy"]
    assert [c["finish_reason"] for c in choices] == ["stop", "length"]
    assert choices[0]["logprobs"] == lp("b")
    assert choices[1]["logprobs"]["content"][0]["token"] == "y"


def test_string_extras_are_joined_and_per_token_extras_dropped() -> None:
    chunks = [
        chunk([delta(role="assistant", reasoning_content="thin", token_id=1)]),
        chunk([delta(reasoning_content="king", refusal="no", token_id=2)]),
        chunk([delta(function_call={"name": "old", "arguments": "{"})]),
        chunk([delta(function_call={"arguments": "}"}, finish="function_call")]),
    ]
    message = assemble(chunks)["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "thinking",
        "refusal": "no",
        "function_call": {"name": "old", "arguments": "{}"},
    }


def test_an_empty_stream_has_no_choices() -> None:
    result = assemble([])
    assert result["choices"] == []
    assert result["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "hi there you"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2, "logprobs": True},
        {
            "model": "m",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [
                {"type": "function", "function": {"name": "weather"}},
                {"type": "function", "function": {"name": "time"}},
            ],
            "stream_options": {"include_usage": True},
        },
    ],
)
def test_the_fake_upstreams_stream_assembles_to_its_whole_answer(body: dict[str, Any]) -> None:
    whole = fake_openai.completion(body)
    assembled = assemble(fake_openai.stream_chunks(body))
    assert [c["message"] for c in assembled["choices"]] == [c["message"] for c in whole["choices"]]
    assert [c["finish_reason"] for c in assembled["choices"]] == [
        c["finish_reason"] for c in whole["choices"]
    ]
    if body.get("logprobs"):
        tokens = [t["token"] for t in assembled["choices"][0]["logprobs"]["content"]]
        assert "".join(tokens) == whole["choices"][0]["message"]["content"]


RECORDED = recordings_root() / "azure" / "fb785db7fafd.json"


@pytest.mark.skipif(not RECORDED.is_file(), reason=f"no recording at {RECORDED}")
def test_a_recorded_azure_tool_call_stream() -> None:
    # Azure's first chunk has no choices and an empty model; later deltas repeat nulls.
    exchange = load_exchange(RECORDED)
    result = assemble(list(exchange.events or []))
    assert result["model"] == "gpt-5-mini-2025-08-07"
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["id"] == "call_TMbEoYn9q0ZKtoxav5LpD9Ts"
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Tokyo"}


def test_empty_logprobs_are_kept_empty_not_dropped() -> None:
    first = {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "logprobs": {}}
    result = assemble([chunk([first]), chunk([delta(finish="stop")])])
    assert result["choices"][0]["logprobs"] == {}


def test_list_fields_are_joined_and_audio_pieced_together() -> None:
    citation = {"type": "url_citation", "url_citation": {"url": "https://a.example"}}
    chunks = [
        chunk([delta(role="assistant", content="See", audio={"id": "audio_1", "transcript": ""})]),
        chunk(
            [delta(content=" a", annotations=[citation], audio={"data": "AAA", "transcript": "Se"})]
        ),
        chunk([delta(audio={"data": "BBB", "transcript": "e a"})]),
        chunk([delta(finish="stop", audio={"expires_at": 1700000000})]),
    ]
    message = assemble(chunks)["choices"][0]["message"]
    assert message["content"] == "See a"
    assert message["annotations"] == [citation]
    assert message["audio"] == {
        "id": "audio_1",
        "data": "AAABBB",
        "transcript": "See a",
        "expires_at": 1700000000,
    }


def test_null_logprobs_fields_stay_null_beside_joined_lists() -> None:
    token = {"token": "hi", "logprob": -0.1, "top_logprobs": []}
    first = {**delta(content="hi"), "logprobs": {"content": [token], "refusal": None}}
    result = assemble([chunk([first]), chunk([delta(finish="stop")])])
    assert result["choices"][0]["logprobs"] == {"content": [token], "refusal": None}


def test_an_index_that_is_not_an_integer_falls_back_to_the_position() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks = [
        chunk([{**delta(content="a"), "index": None}, {**delta(content="b"), "index": "1"}]),
        chunk([{**delta(tool_calls=[{**call, "index": None}]), "index": 0}]),
    ]
    choices = assemble(chunks)["choices"]  # sorting None beside 1 used to lose the stream
    assert [c["message"]["content"] for c in choices] == ["a", "b"]
    assert choices[0]["message"]["tool_calls"] == [call]


def test_a_list_never_replaces_the_text_of_its_field() -> None:
    # Magistral streams its thinking as a list in delta.content, then the answer as text.
    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]
    chunks = [
        chunk([delta(role="assistant", content=thinking)]),
        chunk([delta(content="Answer")]),
        chunk([delta(finish="stop")]),
    ]
    message = assemble(chunks)["choices"][0]["message"]
    assert message["content"] == "Answer" and message["role"] == "assistant"


def test_a_tool_only_stream_has_null_content_as_a_whole_answer() -> None:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks = [
        chunk([delta(role="assistant", content="")]),
        chunk([delta(tool_calls=[call])]),
        chunk([delta(finish="tool_calls")]),
    ]
    assert assemble(chunks)["choices"][0]["message"]["content"] is None
    # Without calls, an empty answer stays the empty string it was.
    empty = [chunk([delta(role="assistant", content="")]), chunk([delta(finish="stop")])]
    assert assemble(empty)["choices"][0]["message"]["content"] == ""


def test_openrouter_reasoning_details_are_merged_by_index() -> None:
    def detail(index: Any, **fields: Any) -> dict[str, Any]:
        return {"type": "reasoning.text", "format": "anthropic-claude-v1", "index": index} | fields

    chunks = [
        chunk([delta(role="assistant", reasoning_details=[detail(0, text="Let me ")])]),
        chunk([delta(reasoning_details=[detail(0, text="think.", signature=None)])]),
        chunk([delta(reasoning_details=[detail(0, text="", signature="sig")])]),
        chunk(
            [delta(reasoning_details=[{"type": "reasoning.encrypted", "data": "x", "index": 1}])]
        ),
        chunk([delta(reasoning_details=[{"type": "reasoning.summary", "summary": "s"}])]),
        chunk([delta(content="Hi", finish="stop")]),
    ]
    assert assemble(chunks)["choices"][0]["message"]["reasoning_details"] == [
        detail(0, text="Let me think.", signature="sig"),
        {"type": "reasoning.encrypted", "data": "x", "index": 1},
        {"type": "reasoning.summary", "summary": "s"},
    ]
    assert chunks[0]["choices"][0]["delta"]["reasoning_details"][0]["text"] == "Let me "


# Chunks of any shape a provider might send: assemble() runs when a stored stream is
# read, so it must make a completion of anything, and never raise.
ODD_VALUES: list[Any] = [None, True, 0, 1, 2.5, "", "x", "assistant", [], {}, [True], {"x": 1}]


def _odd(rng: random.Random, make: Any) -> Any:
    return make() if rng.random() < 0.75 else rng.choice(ODD_VALUES)


def _odd_delta(rng: random.Random) -> dict[str, Any]:
    def call() -> dict[str, Any]:
        function = {"name": _odd(rng, lambda: "f"), "arguments": _odd(rng, lambda: "{")}
        return {
            "index": _odd(rng, lambda: rng.randint(0, 2)),
            "id": _odd(rng, lambda: rng.choice(["a", "b"])),
            "function": _odd(rng, lambda: function),
        }

    makers: dict[str, Any] = {
        "role": lambda: "assistant",
        "content": lambda: rng.choice(["a", "", None]),
        "tool_calls": lambda: [_odd(rng, call) for _ in range(rng.randint(0, 2))],
        "function_call": lambda: {"name": _odd(rng, lambda: "f")},
        "audio": lambda: {"data": _odd(rng, lambda: "ab"), "id": "a"},
        "reasoning_details": lambda: [{"index": _odd(rng, lambda: 0), "text": "t"}],
        "refusal": lambda: "no",
        "token_id": lambda: 5,
    }
    return {k: _odd(rng, make) for k, make in makers.items() if rng.random() < 0.4}


def _odd_chunk(rng: random.Random) -> Any:
    def choice() -> dict[str, Any]:
        return {
            "index": _odd(rng, lambda: rng.randint(0, 2)),
            "delta": _odd(rng, lambda: _odd_delta(rng)),
            "logprobs": _odd(rng, lambda: {"content": _odd(rng, lambda: [{"t": 1}])}),
            "finish_reason": _odd(rng, lambda: "stop"),
        }

    made = {
        "id": _odd(rng, lambda: "chatcmpl-x"),
        "created": _odd(rng, lambda: 7),
        "usage": _odd(rng, lambda: None),
        "choices": _odd(rng, lambda: [_odd(rng, choice) for _ in range(rng.randint(0, 3))]),
    }
    return _odd(rng, lambda: made)


def test_chunks_of_any_shape_make_a_completion_and_never_raise() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        chunks = [_odd_chunk(rng) for _ in range(rng.randint(0, 5))]
        completion = assemble(chunks)
        json.dumps(completion)  # JSON the API can send
        assert completion["object"] == "chat.completion"


@pytest.mark.parametrize(
    "odd",
    [
        {"choices": {"index": 0}},
        {"choices": ["x", 1, None]},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"tool_calls": ["x", {"function": "f"}]}}]},
        {"choices": [{"delta": {"audio": {"data": [True]}}}]},
        "a text the tap kept alone",
        7,
    ],
)
def test_what_a_chunk_holds_in_a_shape_of_its_own_adds_nothing(odd: Any) -> None:
    plain = [chunk([delta(role="assistant", content="hi", finish="stop")])]
    got = assemble([odd, *plain])
    want = assemble(plain)
    if isinstance(odd, str):  # a text kept alone: the first choice's content
        want["choices"][0]["message"]["content"] = odd + "hi"
    if odd == {"choices": [{"delta": {"tool_calls": ["x", {"function": "f"}]}}]}:
        call = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        want["choices"][0]["message"]["tool_calls"] = [call]
    if odd == {"choices": [{"delta": {"audio": {"data": [True]}}}]}:
        want["choices"][0]["message"]["audio"] = {"data": [True]}
    assert got == want


def test_azures_empty_first_chunk_gives_no_id_model_or_time() -> None:
    # Its prompt filter results come first, with "id": "", "model": "" and "created": 0.
    first = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
    got = assemble([first, chunk([delta(role="assistant", content="hi", finish="stop")])])
    assert (got["id"], got["model"], got["created"]) == ("chatcmpl-x", "m", 7)
