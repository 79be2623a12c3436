"""From a finished call to the row the writer inserts (``store/record.py``)."""

from __future__ import annotations

import orjson
import pytest

from switchyard.sink import StoredCall
from switchyard.store.queries import COLUMNS
from switchyard.store.record import MalformedRecord, as_events, record_of, row_values

REQUEST = {
    "model": "openai/gpt-x",
    "messages": [{"role": "user", "content": "hi"}],
    "metadata": {"team": "a"},
    "temperature": 0.5,
}


def column(values: tuple[object, ...], name: str) -> object:
    return values[COLUMNS.index(name)]


def answer(completion_id: str = "chatcmpl-ours") -> bytes:
    # Spacing and an escape orjson would not write: the stored text must be this text.
    return (
        b'{"object":"chat.completion","id":"' + completion_id.encode() + b'","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":"h\\u00e9"},'
        b'"finish_reason":"stop"}],  "model":"openai/gpt-x"}'
    )


def test_an_answer_is_stored_as_the_text_the_client_got_under_its_id() -> None:
    call = StoredCall(
        orjson.dumps(REQUEST),
        "openai",
        1.5,
        2.0,
        completion=answer(),
        completion_id="chatcmpl-ours",
    )
    values = row_values(record_of(call))
    assert column(values, "id") == "chatcmpl-ours"
    assert column(values, "completion") == answer().decode()
    assert column(values, "model") == "openai/gpt-x"
    assert orjson.loads(str(column(values, "input_messages"))) == REQUEST["messages"]
    assert orjson.loads(str(column(values, "request"))) == {"temperature": 0.5}
    assert orjson.loads(str(column(values, "metadata"))) == {"team": "a"}
    assert column(values, "created_us") == 1_500_000
    assert column(values, "streamed") is False


def test_a_checked_answer_makes_the_same_row_parsing_only_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a chat handler hands over: its own JSON object under the record's id.
    record = record_of(
        StoredCall(REQUEST, "openai", 1.5, 2.0, completion=answer(), completion_id="chatcmpl-ours")
    )
    checked = (*record[:9], True)
    unchecked_row = row_values(record)
    parsed: list[bytes] = []
    loads = orjson.loads

    def counting_loads(data: bytes) -> object:
        parsed.append(data)
        return loads(data)

    monkeypatch.setattr(orjson, "loads", counting_loads)  # the module the writer calls
    assert row_values(checked) == unchecked_row
    assert parsed == [orjson.dumps(REQUEST)]


def test_a_record_of_nine_fields_is_taken_as_unchecked() -> None:
    # A record built before the ``checked`` field (a plugin's hand-over): parsed, stored.
    record = record_of(
        StoredCall(REQUEST, "openai", 1.5, 2.0, completion=answer(), completion_id="chatcmpl-ours")
    )
    assert row_values(record[:9]) == row_values(record)  # type: ignore[arg-type]


@pytest.mark.parametrize("given", [None, "chatcmpl-other"])
def test_an_answer_is_stored_under_the_id_it_holds_whatever_id_came_with_it(
    given: str | None,
) -> None:
    call = StoredCall(
        REQUEST, "openai", 1.0, 2.0, completion=answer("chatcmpl-theirs"), completion_id=given
    )
    values = row_values(record_of(call))
    assert values[0] == "chatcmpl-theirs"
    assert orjson.loads(str(column(values, "completion"))) == orjson.loads(
        answer("chatcmpl-theirs")
    )


def test_an_answer_without_an_id_is_stored_with_the_id_of_its_row() -> None:
    text = b'{"object": "chat.completion", "choices": []}'
    call = StoredCall(REQUEST, "openai", 1.0, 2.0, completion=text, completion_id="chatcmpl-1")
    values = row_values(record_of(call))
    assert values[0] == "chatcmpl-1"
    assert orjson.loads(str(column(values, "completion")))["id"] == "chatcmpl-1"


def test_a_parsed_answer_keeps_its_own_id() -> None:
    completion = {"id": 7, "object": "chat.completion", "choices": []}
    call = StoredCall(REQUEST, "openai", 1.0, 2.0, completion=completion, completion_id="c-2")
    values = row_values(record_of(call))
    assert values[0] == "7"
    assert orjson.loads(str(column(values, "completion")))["id"] == 7


def test_a_parsed_answer_without_an_id_gets_the_id_it_is_stored_under() -> None:
    completion = {"object": "chat.completion", "choices": []}
    values = row_values(record_of(StoredCall(REQUEST, "openai", 1.0, 2.0, completion=completion)))
    stored = orjson.loads(str(column(values, "completion")))
    assert stored["id"] == values[0] and str(values[0]).startswith("chatcmpl-")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"", "not JSON"),
        (b"not json", "not JSON"),
        (b'{"id":"chatcmpl-1"', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id":"chatcmpl-1","x":"\xff"}', "not JSON"),
    ],
)
def test_an_answer_that_is_not_a_json_object_is_refused(text: bytes, why: str) -> None:
    call = StoredCall(REQUEST, "openai", 1.0, 2.0, completion=text, completion_id="chatcmpl-1")
    with pytest.raises(MalformedRecord, match=why):
        row_values(record_of(call))


def test_a_request_that_is_not_a_json_object_is_refused() -> None:
    call = StoredCall(b"[]", "openai", 1.0, 2.0, completion=answer(), completion_id="c")
    with pytest.raises(MalformedRecord, match="request"):
        row_values(record_of(call))


@pytest.mark.parametrize("field", ["messages", "temperature"])
def test_a_request_nested_deeper_than_json_can_be_written_is_refused(field: str) -> None:
    # Read from a client (orjson reads 1,024 levels), beyond what it writes (254): a
    # plugin provider may have answered it, and the writer must refuse it, not fail.
    deep = b"[" * 300 + b"]" * 300
    request = orjson.dumps({**REQUEST, field: "X"}).replace(b'"X"', deep)
    call = StoredCall(request, "openai", 1.0, 2.0, completion=answer(), completion_id="c")
    with pytest.raises(MalformedRecord, match="cannot be made a row"):
        row_values(record_of(call))


CHUNKS = [
    {"id": "chatcmpl-s", "model": "openai/gpt-x", "choices": [{"index": 0, "delta": d}]}
    for d in ({"role": "assistant", "content": ""}, {"content": "h\u00e9"}, {"content": "!"})
]


def _streamed(answer: bytes) -> tuple[object, ...]:
    record = (
        orjson.dumps(REQUEST),
        answer,
        "openai",
        1.0,
        2.0,
        "up-1",
        True,
        None,
        "chatcmpl-s",
        False,
    )
    return row_values(record)


def test_a_streams_chunks_as_a_json_array_or_as_sse_events_make_the_same_row() -> None:
    # A handler hands over a JSON array; a record an earlier version saved at shutdown
    # (and StoredCall.events) holds SSE events, the [DONE] included.
    array = b"[" + b",".join(orjson.dumps(c) for c in CHUNKS) + b"]"
    events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in CHUNKS)
    from_array, from_events = _streamed(array), _streamed(events + b"data: [DONE]\n\n")
    assert from_array == from_events
    completion = orjson.loads(str(column(from_array, "completion")))
    assert completion["id"] == "chatcmpl-s"
    message = completion["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "h\u00e9!", "refusal": None}
    assert column(from_array, "streamed") is True


@pytest.mark.parametrize("answer", [b"[1, 2]", b'[{"choices": []}, ["x"]]', b"[{"])
def test_a_stream_whose_chunks_are_not_json_objects_is_refused(answer: bytes) -> None:
    with pytest.raises(MalformedRecord):
        _streamed(answer)


def test_a_stream_saved_for_later_is_kept_as_sse_events_which_every_version_reads() -> None:
    array = b"[" + b",".join(orjson.dumps(c) for c in CHUNKS) + b"]"
    events = as_events(array)
    assert events.startswith(b"data: {") and events.count(b"\n\ndata: ") == len(CHUNKS) - 1
    assert _streamed(events) == _streamed(array)
    assert as_events(events) == events  # already events: as it is
    assert as_events(b"[{") == b"[{"  # not JSON: refused when claimed, as now


# The tap keeps a chunk that only adds text as its text alone (server/stream.py).
COMPACT = b"[" + orjson.dumps(CHUNKS[0]) + b',"h\\u00e9","!"]'


def test_a_text_kept_alone_makes_the_row_its_whole_chunk_makes() -> None:
    array = b"[" + b",".join(orjson.dumps(c) for c in CHUNKS) + b"]"
    assert _streamed(COMPACT) == _streamed(array)


def test_a_text_kept_alone_is_saved_for_later_as_the_chunk_it_stands_for() -> None:
    # An older version claiming the file after a rollback reads only objects.
    events = as_events(COMPACT)
    assert b'data: "' not in events
    assert events.count(b"data: {") == len(CHUNKS)
    assert _streamed(events) == _streamed(COMPACT)


def test_a_checked_stream_is_stored_as_the_taps_array_parsing_only_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the chat handler hands over for a stream: the tap's array, chunks under the
    # record's id; assembled when the row is read (rows.py), not here.
    request = orjson.dumps({**REQUEST, "stream": True})
    record = (request, COMPACT, "openai", 1.5, 2.0, "up-1", True, None, "chatcmpl-s", True)
    parsed: list[bytes] = []
    loads = orjson.loads

    def counting_loads(data: bytes) -> object:
        parsed.append(data)
        return loads(data)

    monkeypatch.setattr(orjson, "loads", counting_loads)
    values = row_values(record)
    assert parsed == [request]
    assert column(values, "id") == "chatcmpl-s"
    assert column(values, "completion") == COMPACT.decode()
    assert column(values, "model") == REQUEST["model"]
    assert column(values, "streamed") is True
    # Unchecked, the same record is assembled here, to the completion a read makes.
    unchecked = row_values((*record[:9], False))
    assert column(unchecked, "completion") != COMPACT.decode()
    assert [v for n, v in zip(COLUMNS, values, strict=True) if n != "completion"] == [
        v for n, v in zip(COLUMNS, unchecked, strict=True) if n != "completion"
    ]
