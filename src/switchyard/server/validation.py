"""Checks of the fields OpenAI defines, on the body as parsed (a plain dict).

Only known fields are checked; unknown ones pass through to the provider (vLLM's
``guided_choice``, say). A check returns a description of what is wrong, or None; the
first problem becomes a 400 that names the field. ``null`` counts as absent, as in
OpenAI's API. This is table-driven and allocation-light because it runs per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from switchyard.errors import InvalidRequestError

Check = Callable[[Any], str | None]


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


MODEL_MAX = 256  # the store's column (store/schema.py); no provider's ids come close


def _model(v: Any) -> str | None:
    if not isinstance(v, str) or not v:
        return "must be a non-empty string"
    return None if len(v) <= MODEL_MAX else f"must be at most {MODEL_MAX} characters"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _dict(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be an object"


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, int) or isinstance(v, bool):
            return "must be an integer"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return _range_text(lo, hi)
        return None

    return check


def _number(lo: float | None = None, hi: float | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "must be a number"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return _range_text(lo, hi)
        return None

    return check


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"must be between {lo} and {hi}"
    return f"must be at least {lo}" if lo is not None else f"must be at most {hi}"


def _completion_logprobs(v: Any) -> str | None:
    # OpenAI defines an integer 0..5; Llama Stack's clients send true/false, which the
    # OpenAI-compatible servers behind it accept, so those pass through too.
    if isinstance(v, bool):
        return None
    return _int(0, 5)(v)


def _one_of(*allowed: str) -> Check:
    choices = ", ".join(repr(a) for a in allowed)

    def check(v: Any) -> str | None:
        return None if v in allowed else f"must be one of {choices}"

    return check


def _stop(v: Any) -> str | None:
    if isinstance(v, str):
        return None
    # OpenAI takes at most 4; vLLM, Together and others more: the provider judges.
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return None
    return "must be a string or a list of strings"


METADATA_MAX_KEYS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512


def metadata_problem(metadata: Any) -> str | None:
    """OpenAI's limits on metadata, the same on create and on update."""
    if not isinstance(metadata, dict):
        return "must be an object of string keys and string values, or null"
    if len(metadata) > METADATA_MAX_KEYS:
        return f"may have at most {METADATA_MAX_KEYS} keys"
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_MAX:
            return f"keys must be at most {METADATA_KEY_MAX} characters ({key[:20]!r}...)"
        if not isinstance(value, str) or len(value) > METADATA_VALUE_MAX:
            return f"values must be strings of at most {METADATA_VALUE_MAX} characters ({key!r})"
        if "\x00" in key or "\x00" in value:
            # PostgreSQL's JSON operators cannot read it back: one such row would fail
            # every metadata filter.
            return f"keys and values must not contain NUL characters (\\u0000) ({key!r})"
    return None


def _response_format(v: Any) -> str | None:
    if not isinstance(v, dict) or not isinstance(v.get("type"), str):
        return (
            "must be an object with a string type: 'text', 'json_object', 'json_schema', "
            "or a provider's own (vLLM's 'structural_tag')"
        )
    kind = v["type"]
    if kind == "json_schema":
        schema = v.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            return "json_schema must be an object with a 'name'"
    return None


def _named(tool: dict[str, Any], kind: str) -> bool:
    """Whether ``tool[kind]`` is an object with a string name ({"function": {"name": ...}})."""
    spec = tool.get(kind)
    return isinstance(spec, dict) and isinstance(spec.get("name"), str)


# Tool types whose shape OpenAI defines; a provider's own (Groq's "browser_search",
# say) passes through unchecked, for the provider to judge.
_NAMED_TOOLS = ("function", "custom")


def _tools(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be a list"
    for i, tool in enumerate(v):
        if not isinstance(tool, dict) or not isinstance(tool.get("type", "function"), str):
            return f"[{i}] must be an object with a string 'type'"
        kind = tool.get("type", "function")
        if kind in _NAMED_TOOLS and not _named(tool, kind):
            return f"[{i}].{kind} must be an object with a 'name'"
    return None


def _tool_choice(v: Any) -> str | None:
    if v in ("none", "auto", "required"):
        return None
    if not isinstance(v, dict) or not isinstance(v.get("type", "function"), str):
        return (
            "must be 'none', 'auto', 'required' or an object such as "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    kind = v.get("type", "function")
    if kind in _NAMED_TOOLS and not _named(v, kind):
        return f"{kind} must be an object with a 'name'"
    if kind == "allowed_tools":
        allowed = v.get("allowed_tools")
        if not isinstance(allowed, dict) or not isinstance(allowed.get("tools"), list):
            return "allowed_tools must be an object with a 'mode' and a list of 'tools'"
        if allowed.get("mode") not in ("auto", "required"):
            return "allowed_tools.mode must be 'auto' or 'required'"
    return None


def _stream_options(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    usage = v.get("include_usage")
    return None if usage is None or isinstance(usage, bool) else "include_usage must be a boolean"


ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# The roles whose content may be null: an assistant turn that only called tools, and
# the legacy function result (OpenAI's schema: required, nullable).
_CONTENT_OPTIONAL = frozenset({"assistant", "function"})


def _content_part(part: Any) -> str | None:
    # Types OpenAI defines are checked; a provider's own (vLLM's video_url, audio_url,
    # image_embeds) passes through for the provider to judge, as unknown tools do.
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        return (
            "must be an object with a string type, such as 'text', 'image_url', "
            "'input_audio' or 'file'"
        )
    kind = part["type"]
    if kind == "text" and not isinstance(part.get("text"), str):
        return "text must be a string"
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            return "image_url must be an object with a 'url'"
    if kind == "file" and not isinstance(part.get("file"), dict):
        return "file must be an object"
    return None


def _message(message: Any) -> tuple[str, str] | None:
    """What is wrong with one message, as (the field under it, the problem); its place
    in the list is added only for a message that fails, not for each one that passes."""
    if not isinstance(message, dict):
        return "", "must be an object with 'role' and 'content'"
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        return ".role", "must be one of " + ", ".join(sorted(ROLES))
    problem = _content(role, message.get("content"))
    if problem is None and role == "tool" and not isinstance(message.get("tool_call_id"), str):
        return ".tool_call_id", "is required for a tool message"
    return problem


def _content(role: str, content: Any) -> tuple[str, str] | None:
    if isinstance(content, str):
        return None
    if isinstance(content, list):
        for j, part in enumerate(content):
            problem = _content_part(part)
            if problem:
                return f".content[{j}]", problem
        return None
    if content is None:
        return None if role in _CONTENT_OPTIONAL else (".content", "is required for this role")
    return ".content", "must be a string or a list of content parts"


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "must be a non-empty list of messages")
    for i, message in enumerate(messages):
        problem = _message(message)
        if problem:
            field, text = problem
            raise _invalid(f"messages[{i}]{field}", text)


def _prompt(v: Any) -> str | None:
    if isinstance(v, str):
        return None
    if isinstance(v, list) and v:
        if all(isinstance(x, str) for x in v) or all(_is_int(x) for x in v):
            return None
        if all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in v):
            return None
    return "must be a string, a non-empty list of strings, or token arrays"


MAX_EMBEDDING_INPUTS = 2048


def _embedding_input(v: Any) -> str | None:
    if isinstance(v, str):
        return None if v else "must not be an empty string"
    if not isinstance(v, list) or not v:
        return "must be a non-empty string or a non-empty list"
    if all(_is_int(x) for x in v):
        return None  # one text as token ids
    if len(v) > MAX_EMBEDDING_INPUTS:
        # OpenAI's limit. Past it, the inline model would hold its thread for minutes.
        return f"must have at most {MAX_EMBEDDING_INPUTS} items; send the rest in another request"
    if all(isinstance(x, str) for x in v):
        return None if all(v) else "must not contain empty strings"
    tokens = all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in v)
    return None if tokens else "must be a string, a list of strings, or token arrays"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_SAMPLING: dict[str, Check] = {
    "model": _model,
    "stream": _bool,
    "stream_options": _stream_options,
    "n": _int(1, 128),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "max_tokens": _int(0),
    "stop": _stop,
    "seed": _int(),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _dict,
    "user": _string,
}

CHAT: Mapping[str, Check] = {
    **_SAMPLING,
    "max_completion_tokens": _int(0),
    "logprobs": _bool,
    "top_logprobs": _int(0, 20),
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _bool,
    "response_format": _response_format,
    "store": _bool,
    "metadata": metadata_problem,
}

COMPLETIONS: Mapping[str, Check] = {
    **_SAMPLING,
    "prompt": _prompt,
    "suffix": _string,
    "echo": _bool,
    "best_of": _int(1, 20),
    "logprobs": _completion_logprobs,
}

EMBEDDINGS: Mapping[str, Check] = {
    "model": _model,
    "input": _embedding_input,
    "encoding_format": _one_of("float", "base64"),
    "dimensions": _int(1),
    "user": _string,
}


def _invalid(param: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid '{param}': {problem}.", param=param)


def check_body(body: Any, fields: Mapping[str, Check], required: tuple[str, ...]) -> None:
    """Raise a 400 naming the first bad field; unknown fields are left alone."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    for name in required:
        if body.get(name) is None:
            raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
    for name, value in body.items():
        check = fields.get(name)
        if check is not None and value is not None:
            problem = check(value)
            if problem:
                raise _invalid(name, problem)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _invalid("stream_options", "is only allowed when 'stream' is true")
