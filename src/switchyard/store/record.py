"""What the write path carries: a finished call as bytes, turned into a row by the writer.

A handler hands over the bytes it already has (the client's request as sent, the
answer as the client got it: a JSON object, or a stream's chunks as a JSON array of
the chunks its events carried, those that only add text as their text), so the request
path serialises nothing twice and parses nothing for the store. The writer (in its own
process by default) parses the request; the handler's answer goes into its row as it
is, a stream mostly of text as its chunks, to be assembled when the row is read (reads
are rare, writes are every call: bench/NOTES.md, section 62). Records from elsewhere
(a ``StoredCall``, a file saved at shutdown) are checked, and their streams assembled,
here. A record is a flat tuple of bytes, strings and numbers: cheap to marshal, and
nothing the garbage collector traverses while it waits in the queue (bench/NOTES.md,
section 7).
"""

from __future__ import annotations

from typing import Any

import orjson

from switchyard.ids import new_completion_id
from switchyard.recording.sse import DONE, SSEParser
from switchyard.sink import Record, StoredCall
from switchyard.store.assemble import assemble
from switchyard.store.queries import Values

__all__ = ["MalformedRecord", "Record", "as_events", "record_id", "record_of", "row_values"]


PROVIDER_ID_MAX = 256  # schema.py's provider_completion_id

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
    if isinstance(completion, dict):
        # The id inside the answer is the one the client saw: it names the row.
        if completion.get("id"):
            our_id = str(completion["id"])
            completion = orjson.dumps(completion)
        else:
            our_id = our_id or new_completion_id(int(call.started * 1e9))
            completion = orjson.dumps({**completion, "id": our_id})
    if completion is None:
        answer = call.events
        if answer is None:
            answer = orjson.dumps(list(call.chunks or ()))
    else:
        # Bytes as they are; anything else as its JSON, which the writer refuses, saying why.
        answer = completion if isinstance(completion, bytes) else orjson.dumps(completion)
    return plain_record(
        (
            request,
            answer,
            call.provider_id,
            call.started,
            call.finished,
            call.provider_completion_id,
            streamed,
            call.caller,
            # Fixed here, once: a row made again on a retry must keep its id, so that
            # the insert's ON CONFLICT (id) sees it as the same row.
            our_id or new_completion_id(int(call.started * 1e9)),
            False,  # the answer is parsed, and a stream assembled, by the writer
        )
    )


def plain_record(record: Record) -> Record:
    """``record`` with plain types only (str, float, bytes): what marshal takes (a
    subclass, an enum's str or numpy's float, it does not)."""
    request, answer, provider_id, started, finished, upstream_id = record[:6]
    streamed, caller, our_id, checked = record[6:]
    return (
        bytes(request),
        bytes(answer),
        str(provider_id),
        float(started),
        float(finished),
        None if upstream_id is None else str(upstream_id),
        bool(streamed),
        None if caller is None else str(caller),
        str(our_id),
        bool(checked),
    )


def row_values(record: Record) -> Values:
    """The INSERT's parameters for ``record`` (in ``COLUMNS`` order); MalformedRecord if
    it has none.

    A stored completion is what the client got (our id, the model id it sent), plus
    ``metadata`` and ``input_messages`` (as Llama Stack returns them) and what only we
    know: the provider, the provider's own completion id, timings, whether it streamed.
    """
    try:
        # A record of nine fields (before ``checked``; a plugin's) is taken as unchecked.
        request_raw, answer, provider_id, started, finished, upstream_id = record[:6]
        streamed, caller, our_id = record[6:9]
        checked = record[9] if len(record) > 9 else False
        request = orjson.loads(request_raw)
        if not isinstance(request, dict):
            raise MalformedRecord("the request is not a JSON object")
        if checked:
            # The handler's own JSON under our id (chat.py): a whole answer as the very
            # text the client got; a stream's chunks as the tap's array, assembled when
            # the row is read (rows.py). Neither is parsed again here.
            row_id, completion_text, completion = our_id, answer.decode(), None
        else:
            row_id, completion_text, completion = _completion(answer, streamed, our_id)
        messages = request.get("messages")
        metadata = request.get("metadata")
        model = request.get("model") or (completion or {}).get("model") or ""
        rest = {k: v for k, v in request.items() if k not in _REQUEST_OWN_COLUMNS}
        # Serialised here, inside the try: JSON read from a client can nest deeper than
        # orjson writes (1,024 against 254 levels), which must refuse the record, not
        # fail the writer's batch.
        columns = (
            orjson.dumps(messages if isinstance(messages, list) else []).decode(),
            orjson.dumps(rest).decode(),
            orjson.dumps(metadata if isinstance(metadata, dict) else None).decode(),
        )
    except MalformedRecord:
        raise
    except orjson.JSONDecodeError as err:
        raise MalformedRecord(f"not JSON: {err}") from None
    except (AttributeError, TypeError, KeyError, ValueError) as err:
        raise MalformedRecord(f"a record that cannot be made a row: {err!r}") from None
    return (
        row_id,
        int(started * 1_000_000),
        int(finished * 1_000_000),
        str(model),
        provider_id,
        # The provider's own id, for finding the call in its logs; one longer than the
        # column (a broken provider's) is cut rather than cost the row on PostgreSQL.
        # PostgreSQL's text refuses NUL, which would cost the row too.
        None if upstream_id is None else upstream_id[:PROVIDER_ID_MAX].replace("\x00", "\ufffd"),
        caller,
        streamed,
        completion_text,
        *columns,
    )


def _completion(answer: bytes, streamed: bool, our_id: str) -> tuple[str, str, dict[str, Any]]:
    """The row's id, its completion as JSON text, and the completion, for an answer
    not marked ``checked`` (the record's last field).

    A whole answer holding the record's id goes in as the very text given: it is parsed,
    to be sure it is a JSON object, but not serialised again, nor made into a row by way
    of a dict (17% of the writer's instructions per row; bench/NOTES.md, section 20).
    Otherwise (a stream's chunks, an answer under another id or none) the row takes the
    id inside it, the one its client saw, and the completion is serialised from what
    was parsed.
    """
    if streamed:
        completion = assemble(_chunks(answer))
    else:
        completion = orjson.loads(answer)
        if not isinstance(completion, dict):
            raise MalformedRecord("the answer is not a JSON object")
        if completion.get("id") == our_id:
            return our_id, answer.decode(), completion
    if not completion.get("id"):
        completion["id"] = our_id  # a stream that ended before its first chunk
    return str(completion["id"]), orjson.dumps(completion).decode(), completion


def _chunks(answer: bytes) -> list[Any]:
    """A stream's chunks: a JSON array, as handlers hand them over (one parse for the
    whole stream), or SSE events (``StoredCall.events``; records that an earlier
    version saved at shutdown)."""
    if answer[:1] == b"[":
        # An object per chunk, or a string for a text the tap kept alone: anything else
        # is not a stream (assemble() would pass over it), and the caller is told.
        chunks = orjson.loads(answer)
        if type(chunks) is not list or any(type(c) not in (dict, str) for c in chunks):
            raise MalformedRecord("a stream's chunks are not a list of JSON objects")
        return chunks
    parser = SSEParser()
    return [orjson.loads(data) for data in parser.feed(answer) + parser.flush() if data != DONE]


def as_events(answer: bytes) -> bytes:
    """A stream's answer as SSE events: the form every version of the writer reads, for
    what outlives this process (``spill``: a file saved at shutdown may be claimed by
    an older version after a rollback, whose parse would find no event in an array)."""
    if answer[:1] != b"[":
        return answer
    try:
        chunks = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return answer  # refused as it is when claimed, as it would be now
    return b"".join(b"data: " + orjson.dumps(_whole(chunk)) + b"\n\n" for chunk in chunks)


def _whole(chunk: Any) -> Any:
    """A chunk as an event carries it: a text the tap kept alone (a string) becomes the
    chunk it stands for, which every version's assemble() reads the same way."""
    if type(chunk) is str:
        return {"choices": [{"index": 0, "delta": {"content": chunk}}]}
    return chunk


def record_id(record: Record) -> str:
    """The completion id a record will be stored under, for log lines ("?" if none)."""
    try:
        return str(row_values(record)[0])
    except MalformedRecord:
        return "?"
