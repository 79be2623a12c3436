"""What the write path carries: a finished call as bytes, turned into a row by the writer.

A handler hands over the bytes it already has (the client's request as sent, the
answer as the client got it: a JSON object, or a stream's SSE events), so the request
path serialises nothing twice and parses nothing for the store. The writer (in its own
process by default) parses and assembles them. A record is a flat tuple of bytes,
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
    if completion is not None:
        answer = completion if isinstance(completion, bytes) else orjson.dumps(completion)
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
        call.completion_id or new_completion_id(),
    )


def row_of(record: Record) -> dict[str, Any]:
    """The ``chat_completions`` row for ``record``; MalformedRecord if it has none.

    A stored completion is what the client got (our id, the model id it sent), plus
    ``metadata`` and ``input_messages`` (as Llama Stack returns them) and what only we
    know: the provider, the provider's own completion id, timings, whether it streamed.
    """
    request_raw, answer, provider_id, started, finished, upstream_id, streamed, caller, our_id = (
        record
    )
    try:
        request = orjson.loads(request_raw)
        completion = assemble(_events(answer)) if streamed else orjson.loads(answer)
    except orjson.JSONDecodeError as err:
        raise MalformedRecord(f"not JSON: {err}") from None
    except (AttributeError, TypeError, KeyError, ValueError) as err:
        raise MalformedRecord(f"a stream that cannot be assembled: {err!r}") from None
    if not isinstance(request, dict) or not isinstance(completion, dict):
        raise MalformedRecord("the request or the answer is not a JSON object")
    if not completion.get("id"):
        completion["id"] = our_id  # a stream that ended before its first chunk
    messages = request.get("messages")
    metadata = request.get("metadata")
    return {
        "id": str(completion["id"]),
        "created_us": int(started * 1_000_000),
        "finished_us": int(finished * 1_000_000),
        "model": str(request.get("model") or completion.get("model") or ""),
        "provider_id": provider_id,
        "provider_completion_id": upstream_id,
        "caller": caller,
        "streamed": streamed,
        "completion": completion,
        "input_messages": messages if isinstance(messages, list) else [],
        "request": {k: v for k, v in request.items() if k not in _REQUEST_OWN_COLUMNS},
        "metadata": metadata if isinstance(metadata, dict) else None,
    }


def _events(raw: bytes) -> list[Any]:
    parser = SSEParser()
    return [orjson.loads(data) for data in parser.feed(raw) + parser.flush() if data != DONE]


def record_id(record: Record) -> str:
    """The completion id a record will be stored under, for log lines ("?" if none)."""
    try:
        return str(row_of(record)["id"])
    except MalformedRecord:
        return "?"
