"""What the write path carries: a finished call as bytes, turned into a row by the writer.

A handler hands over the bytes it already has (the client's request as sent, the
answer as the client got it: a JSON object, or a stream's SSE events), so the request
path serialises nothing twice and parses nothing for the store. The writer (in its own
process by default) parses the request and assembles a stream's events; a whole answer
goes into its row as it is. A record is a flat tuple of bytes,
strings and numbers: cheap to marshal, and nothing the garbage collector traverses
while it waits in the queue (bench/NOTES.md, section 7).
"""

from __future__ import annotations

from typing import Any

import orjson

from switchyard.ids import new_completion_id
from switchyard.recording.sse import DONE, SSEParser
from switchyard.sink import StoredCall
from switchyard.store.assemble import assemble
from switchyard.store.queries import Values

# (request JSON, answer JSON or SSE bytes, provider id, started, finished,
#  provider's completion id, streamed, caller, our completion id)
Record = tuple[bytes, bytes, str, float, float, str | None, bool, str | None, str]


# Kept in their own columns, so not repeated in the stored request.
_REQUEST_OWN_COLUMNS = frozenset({"messages", "metadata", "model"})


class MalformedRecord(ValueError):
    """A record whose request or answer cannot be made into a row."""


def record_of(call: StoredCall) -> Record:
    """The record for ``call``: whichever of its fields are bytes are taken as they are."""
    request = call.request if isinstance(call.request, bytes) else orjson.dumps(call.request)
    completion = call.completion
    streamed = completion is None
    our_id = call.completion_id
    if completion is not None:
        # A whole answer is stored under the id it holds, unparsed by the writer.
        if isinstance(completion, bytes):
            answer = completion
            our_id = our_id or _answer_id(completion)
        else:
            our_id = _answer_id(completion) or our_id or new_completion_id()
            answer = orjson.dumps({**completion, "id": our_id})
    elif call.events is not None:
        answer = call.events
    else:
        answer = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in call.chunks or ())
    # Plain str and float: a subclass (an enum's str, numpy's float) would not marshal.
    return (
        request,
        answer,
        str(call.provider_id),
        float(call.started),
        float(call.finished),
        call.provider_completion_id,
        streamed,
        None if call.caller is None else str(call.caller),
        # Fixed here, once: a row made again on a retry must keep its id, so that the
        # insert's ON CONFLICT (id) sees it as the same row.
        our_id or new_completion_id(),
    )


def _answer_id(completion: dict[str, Any] | bytes) -> str | None:
    if isinstance(completion, bytes):
        try:
            completion = orjson.loads(completion)
        except orjson.JSONDecodeError:
            return None  # the writer reports it as malformed
    answer_id = completion.get("id") if isinstance(completion, dict) else None
    return None if answer_id is None else str(answer_id)


def row_values(record: Record) -> Values:
    """The INSERT's parameters for ``record`` (in ``COLUMNS`` order); MalformedRecord if
    it has none.

    A stored completion is what the client got (our id, the model id it sent), plus
    ``metadata`` and ``input_messages`` (as Llama Stack returns them) and what only we
    know: the provider, the provider's own completion id, timings, whether it streamed.
    A whole answer is stored as the very JSON text the client got, unparsed: parsing
    and serialising it again was a third of the writer's CPU per row (bench/NOTES.md,
    section 20). Only a stream's events are parsed, to assemble its completion.
    """
    request_raw, answer, provider_id, started, finished, upstream_id, streamed, caller, our_id = (
        record
    )
    try:
        request = orjson.loads(request_raw)
        if streamed:
            completion = _assembled(answer, our_id)
            completion_text = orjson.dumps(completion).decode()
        elif answer[:1] == b"{":
            completion, completion_text = None, answer.decode()
        else:
            raise MalformedRecord("the answer is not a JSON object")
    except orjson.JSONDecodeError as err:
        raise MalformedRecord(f"not JSON: {err}") from None
    except (AttributeError, TypeError, KeyError, ValueError) as err:
        raise MalformedRecord(f"a stream that cannot be assembled: {err!r}") from None
    if not isinstance(request, dict):
        raise MalformedRecord("the request is not a JSON object")
    messages = request.get("messages")
    metadata = request.get("metadata")
    model = request.get("model") or (completion or {}).get("model") or ""
    rest = {k: v for k, v in request.items() if k not in _REQUEST_OWN_COLUMNS}
    return (
        str(completion["id"]) if completion is not None else our_id,
        int(started * 1_000_000),
        int(finished * 1_000_000),
        str(model),
        provider_id,
        upstream_id,
        caller,
        streamed,
        completion_text,
        orjson.dumps(messages if isinstance(messages, list) else []).decode(),
        orjson.dumps(rest).decode(),
        orjson.dumps(metadata if isinstance(metadata, dict) else None).decode(),
    )


def _assembled(answer: bytes, our_id: str) -> dict[str, Any]:
    completion = assemble(_events(answer))
    if not completion.get("id"):
        completion["id"] = our_id  # a stream that ended before its first chunk
    return completion


def _events(raw: bytes) -> list[Any]:
    parser = SSEParser()
    return [orjson.loads(data) for data in parser.feed(raw) + parser.flush() if data != DONE]


def record_id(record: Record) -> str:
    """The completion id a record will be stored under, for log lines ("?" if none)."""
    try:
        return str(row_values(record)[0])
    except MalformedRecord:
        return "?"
