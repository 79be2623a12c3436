"""Request checks: known fields validated, unknown ones untouched."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.errors import InvalidRequestError
from switchyard.server.validation import CHAT, COMPLETIONS, EMBEDDINGS, check_body, check_messages

OK_MESSAGES = [
    {"role": "system", "content": "be brief"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            {"type": "file", "file": {"file_id": "f1"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
]


def test_a_full_valid_chat_body_passes_with_unknown_fields() -> None:
    body = {
        "model": "p/m",
        "messages": OK_MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
        "temperature": 0.2,
        "top_p": 1,
        "max_tokens": 10,
        "max_completion_tokens": 10,
        "stop": ["\n"],
        "seed": 1,
        "logprobs": True,
        "top_logprobs": 3,
        "user": "u",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},
        "guided_choice": ["a", "b"],
        "temperature_extra": "anything",
    }
    check_body(body, CHAT, ("model", "messages"))
    check_messages(body["messages"])


def test_null_counts_as_absent() -> None:
    check_body({"model": "m", "messages": [], "temperature": None, "n": None}, CHAT, ("model",))


@pytest.mark.parametrize(
    ("fields", "body", "param"),
    [
        (COMPLETIONS, {"model": "m", "prompt": [[1, 2], [3]], "logprobs": 5}, None),
        (COMPLETIONS, {"model": "m", "prompt": [1, 2, 3], "echo": True, "suffix": "x"}, None),
        (COMPLETIONS, {"model": "m", "prompt": ["a", 1]}, "prompt"),
        (COMPLETIONS, {"model": "m", "prompt": "a", "logprobs": -1}, "logprobs"),
        (COMPLETIONS, {"model": "m", "prompt": "a", "best_of": 0}, "best_of"),
        (EMBEDDINGS, {"model": "m", "input": [[1, 2]], "dimensions": 3}, None),
        (EMBEDDINGS, {"model": "m", "input": ["a", ""]}, "input"),
        (EMBEDDINGS, {"model": "m", "input": "a", "user": 3}, "user"),
        (CHAT, {"model": "m", "messages": [], "n": True}, "n"),
        (CHAT, {"model": "m", "messages": [], "seed": 1.5}, "seed"),
        (CHAT, {"model": "m", "messages": [], "metadata": {"k": 1}}, "metadata"),
        (
            CHAT,
            {"model": "m", "messages": [], "metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
        ),
        (CHAT, {"model": "m", "messages": [], "metadata": {"k": "v" * 513}}, "metadata"),
        (CHAT, {"model": "m", "messages": [], "tool_choice": "sometimes"}, "tool_choice"),
        (EMBEDDINGS, {"model": "m", "input": ["a"] * 2048}, None),
        (CHAT, {"model": "p/" + "m" * 254, "messages": []}, None),
        (CHAT, {"model": "p/" + "m" * 255, "messages": []}, "model"),
        (EMBEDDINGS, {"model": "", "input": "a"}, "model"),
        (EMBEDDINGS, {"model": "m", "input": ["a"] * 2049}, "input"),
        (EMBEDDINGS, {"model": "m", "input": [[1]] * 2049}, "input"),
        (EMBEDDINGS, {"model": "m", "input": [1] * 8000}, None),  # one text's tokens
    ],
)
def test_field_checks(fields: Any, body: dict[str, Any], param: str | None) -> None:
    if param is None:
        check_body(body, fields, ("model",))
        return
    with pytest.raises(InvalidRequestError) as info:
        check_body(body, fields, ("model",))
    assert info.value.param == param
    assert param in info.value.message


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ("hello", "messages[4]"),
        ({"role": "user"}, "messages[4].content"),
        ({"role": "user", "content": ["x"]}, "messages[4].content[0]"),
        ({"role": "tool", "content": "42"}, "messages[4].tool_call_id"),
        ({"role": ["user"], "content": "x"}, "messages[4].role"),  # unhashable: was a 500
        ({"role": {"r": 1}, "content": "x"}, "messages[4].role"),
        ({"role": "user", "content": [{"type": {"a": 1}}]}, "messages[4].content[0]"),
        ({"role": "user", "content": [{"text": "no type"}]}, "messages[4].content[0]"),
    ],
)
def test_a_bad_message_is_named_by_its_place_in_the_list(bad: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_messages([*OK_MESSAGES, bad, {"role": "user", "content": "fine"}])
    assert info.value.param == param
    assert f"'{param}'" in info.value.message


def test_provider_extensions_of_messages_and_formats_pass_through() -> None:
    # vLLM's own content parts and response format; OpenAI's nullable function content.
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video_url", "video_url": {"url": "https://v.example/a.mp4"}},
                {"type": "audio_url", "audio_url": {"url": "https://v.example/a.wav"}},
            ],
        },
        {"role": "function", "name": "f", "content": None},
    ]
    check_messages(messages)
    structural = {"type": "structural_tag", "structures": [], "triggers": []}
    check_body({"model": "m", "messages": [], "response_format": structural}, CHAT, ("model",))


CUSTOM_TOOL = {"type": "custom", "custom": {"name": "code_exec", "format": {"type": "text"}}}
FUNCTION_TOOL = {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [CUSTOM_TOOL, FUNCTION_TOOL]},
        {"tools": [{"type": "browser_search"}]},  # a provider's own tool type
        {"tool_choice": {"type": "custom", "custom": {"name": "code_exec"}}},
        {
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [FUNCTION_TOOL]},
            }
        },
    ],
)
def test_every_tool_shape_openai_defines_passes(extra: dict[str, Any]) -> None:
    check_body({"model": "m", "messages": [], **extra}, CHAT, ("model",))


@pytest.mark.parametrize(
    ("extra", "param", "text"),
    [
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools", "[0].custom"),
        ({"tools": [FUNCTION_TOOL, {"function": {"nom": "f"}}]}, "tools", "[1].function"),
        ({"tools": [{"type": 3}]}, "tools", "string 'type'"),
        ({"tool_choice": {"type": "function", "function": "f"}}, "tool_choice", "function"),
        ({"tool_choice": {"type": "custom"}}, "tool_choice", "custom"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "some"}}},
            "tool_choice",
            "allowed_tools",
        ),
        (
            {
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "some", "tools": []},
                }
            },
            "tool_choice",
            "mode",
        ),
    ],
)
def test_a_malformed_tool_is_named(extra: dict[str, Any], param: str, text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_body({"model": "m", "messages": [], **extra}, CHAT, ("model",))
    assert info.value.param == param
    assert text in info.value.message
