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
from switchyard.server.errors import count

log = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]\n\n"


# The most of a stream the store keeps, counted as its chunks' JSON (what the client is
# sent, whatever the tap holds of it). 128K tokens of text (any model's longest answer)
# take ~40 MB; a provider stuck in a loop could send without end.
MAX_KEPT = 128 * 1024 * 1024

# A stream with more chunks kept whole than this (reasoning, tool calls, logprobs,
# several choices: deltas the tap does not keep as text) is assembled by the store's
# writer, not when read: kept as its chunks it would take ~250 bytes a token on disk,
# and every read would assemble thousands of objects (bench/NOTES.md, section 62).
MAX_WHOLE_STORED = 16


class Tap:
    """What the store keeps of a stream as it passes: each chunk the client was sent
    (None once past MAX_KEPT: the stream is relayed but not stored), and the provider's
    own id for the completion (from its first chunk).

    A chunk that only adds text to the first choice, and whose other fields are those
    of the last chunk kept whole, is kept as its text alone (a JSON string). The array
    is stored as it is and assembled when read (``store/rows.py``): as texts, a stream
    takes about its text's size on disk (kept whole, a chunk takes ~250 bytes a token)
    and a read appends a string instead of walking a chunk. It costs the worker ~5k
    instructions a chunk (bench/NOTES.md, sections 60 and 62). The assembled completion
    is the same either way (``store/assemble.py``).
    """

    __slots__ = ("chunks", "kept", "last", "provider_completion_id", "role_known", "whole")

    def __init__(self) -> None:
        # Each chunk kept whole as its JSON (a fragment orjson copies as it is), or the
        # text of one kept as its text alone: answer() serialises them in one call.
        self.chunks: list[orjson.Fragment | str] | None = []
        self.kept = 0
        self.whole = 0  # chunks kept whole
        self.provider_completion_id: Any = None
        # What assemble() reads from a chunk's top level besides the id and model (ours)
        # and usage (only a chunk without it is kept as text), as the last chunk kept
        # whole had it: a chunk with other values there is kept whole, so that the first
        # non-empty ``created`` and the last non-null fingerprint and service tier stay
        # what they are in the whole stream. None: compare with nothing.
        self.last: tuple[Any, ...] | None = None
        # Whether a chunk kept whole gave the first choice its role: assemble() keeps
        # the first, so a later one (Ollama repeats it in every delta) changes nothing.
        self.role_known = False

    def dump(self, chunks: list[dict[str, Any]], overrides: dict[str, Any]) -> list[bytes]:
        """Each chunk's JSON, with ``overrides`` put in, as the client is sent it; and
        what the store keeps of it. One loop for both: this runs for every chunk."""
        kept = self.chunks
        if kept is None:
            return _dumped(chunks, overrides)
        # The chat handler's overrides put one id and one model in every chunk: they are
        # then the stream's, whatever a chunk kept as its text alone carried.
        compact = bool(overrides.get("id") and overrides.get("model"))
        dumped = []
        size = self.kept
        for chunk in chunks:
            if not self.provider_completion_id:
                # The first id given (Azure's first chunk has an empty one), before ours.
                self.provider_completion_id = chunk.get("id")
            chunk.update(overrides)
            data = orjson.dumps(chunk)
            dumped.append(data)
            top = (
                chunk.get("created"),
                chunk.get("system_fingerprint"),
                chunk.get("service_tier"),
            )
            text = None
            choices = chunk.get("choices")
            if (
                compact
                and top == self.last
                and chunk.get("usage") is None
                and type(choices) is list
                and len(choices) == 1
                and type(choice := choices[0]) is dict
                and choice.get("index") == 0
                and choice.get("finish_reason") is None
                and choice.get("logprobs") is None
                and type(delta := choice.get("delta")) is dict
            ):
                text = delta.get("content")
                if len(delta) != 1 or type(text) is not str:
                    text = _only_text(delta, self.role_known)
            if text is None:
                self.last = top if _plain(top) else None
                self.role_known = self.role_known or _gives_role(choices)
                self.whole += 1
                kept.append(orjson.Fragment(data))
            else:
                kept.append(text)
            size += len(data)
        self.kept = size
        if size > MAX_KEPT:
            self.chunks = None
            STORE_DROPPED.inc()
            log.warning("a stream passed %d MiB: relayed on, but not stored", MAX_KEPT // 2**20)
        return dumped

    def stored_as_chunks(self) -> bool:
        """Whether the store may keep the stream as :meth:`answer`'s chunks, to be
        assembled when read: when they are mostly texts."""
        return self.whole <= MAX_WHOLE_STORED

    def answer(self) -> bytes | None:
        """The chunks as one JSON array (an object per chunk kept whole, a string per
        text kept alone): what the store's writer parses in one call, with no SSE
        framing to take apart (bench/NOTES.md, section 37). None for a stream too large
        to keep."""
        if self.chunks is None:
            return None
        return orjson.dumps(self.chunks)


def _only_text(delta: dict[str, Any], role_known: bool) -> str | None:
    """The delta's text, if that is all it adds to the assembled message: its other
    fields are null, a role after the first, or numbers (Together's ``token_id``),
    which assemble() does not keep. None otherwise."""
    text = delta.get("content")
    if type(text) is not str:
        return None
    for key, value in delta.items():
        if key == "content" or value is None:
            continue
        if key == "role" and role_known and type(value) is str:
            continue
        if type(value) not in (int, float, bool):
            return None
    return text


def _plain(top: tuple[Any, ...]) -> bool:
    """Whether the fingerprint and the service tier are strings or null: for those,
    equal in Python is the same JSON (1, 1.0 and True are equal, but not the same)."""
    _, fingerprint, tier = top
    return (fingerprint is None or type(fingerprint) is str) and (tier is None or type(tier) is str)


def _gives_role(choices: Any) -> bool:
    """Whether a chunk kept whole sets the first choice's role in assemble()."""
    if type(choices) is not list:
        return False
    for position, choice in enumerate(choices):
        if type(choice) is not dict:
            continue
        index = choice.get("index")
        delta = choice.get("delta")
        if (index if type(index) is int else position) == 0 and type(delta) is dict:
            return type(delta.get("role")) is str
    return False


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
        count(err)
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
    dumped = _dumped(chunks, overrides) if tap is None else tap.dump(chunks, overrides)
    if not dumped:  # a plugin's empty batch (say, a generator): no event at all
        return b""
    return b"data: " + b"\n\ndata: ".join(dumped) + b"\n\n"


def _dumped(chunks: list[dict[str, Any]], overrides: dict[str, Any]) -> list[bytes]:
    dumped = []
    for chunk in chunks:
        chunk.update(overrides)
        dumped.append(orjson.dumps(chunk))
    return dumped
