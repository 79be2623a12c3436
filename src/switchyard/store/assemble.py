"""Rebuild a whole chat completion from the chunks of a stream, for the store.

Each choice (by its ``index``) collects: the role; every string field of its deltas
concatenated (``content``, ``refusal``, and providers' extras such as
``reasoning_content``); every list field joined (``annotations``; OpenRouter's
``reasoning_details`` merged by their ``index``); tool calls rebuilt by their ``index``
(id, type, function name and arguments joined across deltas); the legacy
``function_call``; ``audio`` (its ``data`` and ``transcript`` joined, the rest as last
sent); logprobs lists joined; the last finish reason. ``content`` is null, as in a whole
answer, when the stream only called tools and its text was empty. An index that is not
an integer counts as absent: the choice's or the call's place in its list stands for it.
Usage is the last non-null one (the final chunk with ``stream_options.include_usage``);
id, created and model come from the first chunk that has them. Non-string extras in
deltas (Together's ``token_id``) describe one token, not the message, so they are not
kept.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

_STRUCTURED = frozenset({"role", "tool_calls", "function_call"})
_AUDIO_JOINED = ("data", "transcript")  # the parts an audio answer streams in pieces
# OpenRouter streams each reasoning entry in pieces that share an index; the text-like
# fields are joined, the rest (type, id, format, signature) kept as last sent.
_MERGED_BY_INDEX = frozenset({"reasoning_details"})
_DETAIL_JOINED = ("text", "summary", "data")


class _Pieces(list[str]):
    """The pieces of one text field, joined once at the end; a list a provider sent
    as the field's value is kept as sent."""


class _Choice:
    __slots__ = (
        "audio",
        "finish_reason",
        "function_call",
        "lists",
        "logprobs",
        "merged",
        "role",
        "text",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.text: dict[str, list[str]] = {}
        self.lists: dict[str, list[Any]] = {}
        self.merged: dict[str, _ByIndex] = {}
        self.audio: JSON | None = None
        self.tool_calls: dict[int, JSON] = {}
        self.function_call: dict[str, str] | None = None
        self.logprobs: dict[str, list[Any] | None] | None = None
        self.finish_reason: str | None = None

    def add(self, choice: JSON) -> None:
        delta = choice.get("delta")
        if delta and type(delta) is dict:
            # Most deltas are one piece of text, after the first: appended here, in
            # this frame, without a call and a loop per chunk (bench/NOTES.md, 52).
            content = delta.get("content")
            parts = self.text.get("content")
            if type(content) is str and parts is not None and len(delta) == 1:
                parts.append(content)
            else:
                self._add_delta(delta)
        logprobs = choice.get("logprobs")
        if logprobs is not None and isinstance(logprobs, dict):  # no call for the usual null
            self._add_logprobs(logprobs)
        finish_reason = choice.get("finish_reason")
        if finish_reason is not None:
            self.finish_reason = finish_reason

    def _add_delta(self, delta: JSON) -> None:
        # The first delta of a choice, and any with more than one piece of text (a
        # role, tool calls, reasoning): one pass over its items (bench/NOTES.md, 37).
        for key, value in delta.items():
            if type(value) is str:
                if key == "role":
                    if self.role is None:
                        self.role = value
                elif key not in _STRUCTURED:
                    parts = self.text.get(key)
                    if parts is None:
                        self.text[key] = [value]
                    else:
                        parts.append(value)
            elif value is not None:
                self._add_structured(key, value)

    def _add_structured(self, key: str, value: Any) -> None:
        if key == "tool_calls" and isinstance(value, list):
            for position, call in enumerate(value):
                if isinstance(call, dict):
                    self._add_tool_call(position, call)
        elif key == "function_call" and isinstance(value, dict):
            self._add_function_call(value)
        elif key == "audio" and isinstance(value, dict):
            self._add_audio(value)
        elif isinstance(value, list):
            if key in _MERGED_BY_INDEX:
                merged = self.merged.get(key)
                if merged is None:
                    merged = self.merged[key] = _ByIndex()
                merged.add(value)
            else:
                self.lists.setdefault(key, []).extend(value)

    def _add_tool_call(self, position: int, delta: JSON) -> None:
        index = delta.get("index")
        if type(index) is not int:
            index = self._unindexed(position, delta.get("id"))
        call = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function")
        if not isinstance(function, dict):
            return
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                call["function"][key] += function[key]

    def _unindexed(self, position: int, call_id: Any) -> Any:
        """Where a tool-call delta with no index goes. Gemini's OpenAI-compatible API
        sends each call whole, with no index, first in its chunk's list: a new id there
        is a new call, not more of the one before."""
        there = self.tool_calls.get(position)
        if not call_id or there is None or there["id"] in (None, call_id):
            return position
        for index, call in self.tool_calls.items():
            if call["id"] == call_id:
                return index
        index = len(self.tool_calls)
        while index in self.tool_calls:
            index += 1
        return index

    def _add_function_call(self, delta: JSON) -> None:
        if self.function_call is None:
            self.function_call = {"name": "", "arguments": ""}
        for key in ("name", "arguments"):
            if isinstance(delta.get(key), str):
                self.function_call[key] += delta[key]

    def _add_audio(self, delta: JSON) -> None:
        if self.audio is None:
            self.audio = {}
        for key, value in delta.items():
            if key in _AUDIO_JOINED and isinstance(value, str):
                # Pieces kept apart, joined once in result(): joined one by one, a long
                # audio answer would cost quadratic time in the store's writer.
                parts = self.audio.get(key)
                if type(parts) is _Pieces:
                    parts.append(value)
                else:  # the first piece, or after a value that was not text
                    self.audio[key] = _Pieces((value,))
            elif value is not None:
                self.audio[key] = value

    def _add_logprobs(self, logprobs: JSON) -> None:
        if self.logprobs is None:
            self.logprobs = {}
        for key, items in logprobs.items():
            if isinstance(items, list):
                there = self.logprobs.get(key)
                if there is None:
                    self.logprobs[key] = list(items)
                else:
                    there.extend(items)
            else:  # {"refusal": null} stays as the whole answer's logprobs would show it
                self.logprobs.setdefault(key, None)

    def result(self, index: int) -> JSON:
        text = {key: "".join(parts) for key, parts in self.text.items()}
        content = text.pop("content", None)
        if content == "" and (self.tool_calls or self.function_call):
            content = None  # a role chunk's "" before the calls is not an answer
        message: JSON = {
            "role": self.role or "assistant",
            "content": content,
            "refusal": text.pop("refusal", None),  # null when none, as in a whole answer
        }
        message.update(text)
        for key, by_index in self.merged.items():
            self.lists[key] = by_index.result()
        for key, items in self.lists.items():
            # Never over text of the same key: Magistral streams its thinking as a list
            # in delta.content, then the answer as strings; the answer is what is kept.
            message.setdefault(key, items)
        if self.audio is not None:
            message["audio"] = {
                key: "".join(value) if type(value) is _Pieces else value
                for key, value in self.audio.items()
            }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


class _ByIndex:
    """A list field whose entries arrive in pieces that share an ``index`` (OpenRouter's
    ``reasoning_details``): an entry per index, its text-like fields' pieces kept apart
    and joined once at the end (joined piece by piece, a long reasoning cost quadratic
    time in the store's writer)."""

    __slots__ = ("_at", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._at: dict[int, tuple[JSON, dict[str, list[str]]]] = {}

    def add(self, pieces: list[Any]) -> None:
        for piece in pieces:
            index = piece.get("index") if isinstance(piece, dict) else None
            there = self._at.get(index) if type(index) is int else None
            if there is None:
                entry = dict(piece) if isinstance(piece, dict) else piece
                self.items.append(entry)
                if type(index) is int:
                    self._at[index] = (entry, {})
                continue
            entry, parts = there
            for key, value in piece.items():
                if key in _DETAIL_JOINED and isinstance(value, str):
                    joined = parts.get(key)
                    if joined is not None:
                        joined.append(value)
                    elif isinstance(entry.get(key), str):
                        parts[key] = [entry[key], value]
                    else:
                        entry[key] = value
                elif value is not None:
                    entry[key] = value

    def result(self) -> list[Any]:
        for entry, parts in self._at.values():
            for key, joined in parts.items():
                entry[key] = "".join(joined)
        return self.items


def assemble(chunks: list[Any]) -> JSON:
    """The ``chat.completion`` object equivalent to ``chunks`` (one stream, in order).

    It takes any list of JSON values without raising: a stored stream is assembled when
    it is read (``rows.py``), and what a provider sent in a shape of its own (choices
    that are not a list, a delta that is not an object) adds nothing, as it would to a
    client's SDK that skips what it does not know.

    A string among them is a chunk the stream's tap kept as its text alone
    (``server/stream.py``): it stands for a delta ``{"content": text}`` of the first
    choice, and for nothing else."""
    choices: dict[int, _Choice] = {}
    whole: list[JSON] = []
    for chunk in chunks:
        if isinstance(chunk, str):
            first = choices.get(0)
            if first is None:
                first = choices[0] = _Choice()
            parts = first.text.get("content")
            if parts is None:
                first.text["content"] = [chunk]
            else:
                parts.append(chunk)
        elif type(chunk) is dict:  # anything else is not a chunk: it adds nothing
            whole.append(chunk)
            listed = chunk.get("choices")
            if type(listed) is list:
                _add_choices(choices, listed)
    return {
        "id": _first(whole, "id"),
        "object": "chat.completion",
        "created": _first(whole, "created"),
        "model": _first(whole, "model"),
        "choices": [choices[i].result(i) for i in sorted(choices)],
        "usage": _last(whole, "usage"),
        "system_fingerprint": _last(whole, "system_fingerprint"),
        "service_tier": _last(whole, "service_tier"),
    }


def _add_choices(choices: dict[int, _Choice], listed: list[Any]) -> None:
    for position, choice in enumerate(listed):
        if type(choice) is not dict:
            continue
        index = choice.get("index")
        if type(index) is not int:
            index = position
        assembled = choices.get(index)
        if assembled is None:
            assembled = choices[index] = _Choice()
        assembled.add(choice)


def _first(chunks: list[JSON], key: str) -> Any:
    # Azure's first chunk (prompt filter results) has an empty id, model and object, and
    # "created": 0, which is no time either. A tuple, not a set: a value may be a list
    # or an object, which cannot be hashed. Loops, not next() over a generator, which
    # cost ~2.4k instructions more a call (bench/NOTES.md, 52).
    for chunk in chunks:
        value = chunk.get(key)
        if value is not None and value not in ("", 0):
            return value
    return None


def _last(chunks: list[JSON], key: str) -> Any:
    # The last non-null one: usage comes with the final chunk (include_usage).
    for chunk in reversed(chunks):
        value = chunk.get(key)
        if value is not None:
            return value
    return None
