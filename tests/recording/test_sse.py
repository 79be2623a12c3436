"""The incremental SSE parser and encoder."""

from __future__ import annotations

import pytest

from switchyard.recording.sse import DONE, SSEParser, encode_event

STREAM = (
    b'data: {"id":"a","n":1}\n\n'
    b": keep-alive comment\n\n"
    b'data: {"id":"a","n":2}\n\n'
    b"event: message\nid: 7\nretry: 100\ndata: first\ndata:second\ndata:  two spaces\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    b'{"id":"a","n":1}',
    b'{"id":"a","n":2}',
    b"first\nsecond\n two spaces",
    DONE,
]


def _feed_all(parser: SSEParser, chunks: list[bytes]) -> list[bytes]:
    events: list[bytes] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.flush()


def test_whole_stream_in_one_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM) == EXPECTED
    assert parser.flush() == []


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_split_at_every_offset(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    for cut in range(len(stream) + 1):
        parser = SSEParser()
        assert _feed_all(parser, [stream[:cut], stream[cut:]]) == EXPECTED, (newline, cut)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_one_byte_at_a_time(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    parser = SSEParser()
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert _feed_all(parser, chunks) == EXPECTED


def test_split_at_every_pair_of_offsets_with_crlf() -> None:
    stream = b'data: {"a":1}\r\n\r\n: c\r\n\r\ndata: x\r\ndata: y\r\n\r\n'
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            parser = SSEParser()
            chunks = [stream[:first], stream[first:second], stream[second:]]
            assert _feed_all(parser, chunks) == [b'{"a":1}', b"x\ny"], (first, second)


def test_events_are_returned_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [b"one"]
    assert parser.feed(b"o\n\ndata: three\n\n") == [b"two", b"three"]
    assert parser.flush() == []


def test_flush_returns_an_unterminated_final_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: last") == [b"a"]
    assert parser.flush() == [b"last"]
    assert parser.flush() == []


def test_flush_with_pending_carriage_return() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.flush() == [b"a"]


def test_mixed_line_endings() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\n\ndata: b\n\r\ndata: c\r\rdata: d\n\n") == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]


def test_comments_and_other_fields_only_produce_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b": ping\n\nevent: x\nid: 1\n\n\n\n") == []
    assert parser.flush() == []


def test_data_field_forms() -> None:
    parser = SSEParser()
    assert parser.feed(b"data\n\ndata:\n\ndata:no-space\n\ndata:  two\n\ndatum: x\n\n") == [
        b"",
        b"",
        b"no-space",
        b" two",
    ]


def test_extra_blank_lines_between_events() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\n\n\n\ndata: b\n\n\n") == [b"a", b"b"]


def test_payload_may_contain_colons_and_data_text() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"k":"data: v"}\n\n') == [b'{"k":"data: v"}']


def test_encode_event() -> None:
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_event(DONE) == b"data: [DONE]\n\n"
    assert DONE == b"[DONE]"


@pytest.mark.parametrize("payload", [b"", b"x", b"a\nb", b"a\r\nb\n", b'{"a": "b"}'])
def test_encode_then_parse_round_trips(payload: bytes) -> None:
    parser = SSEParser()
    expected = payload.replace(b"\r\n", b"\n")
    assert parser.feed(encode_event(payload)) == [expected]


@pytest.mark.parametrize(
    ("burst", "expected"),
    [
        # Whole single-line events, the shape read in one split.
        (b"data: a\n\ndata: \n\ndata: [DONE]\n\n", [b"a", b"", DONE]),
        (b"data: a: b\n\ndata: data: c\n\n", [b"a: b", b"data: c"]),
        # Shapes that start and end like it but are not: each takes the walk.
        (b"data: a\n\n: ping\n\ndata: b\n\n", [b"a", b"b"]),
        (b"data: a\n\ndata:b\n\n", [b"a", b"b"]),
        (b"data: a\ndata: b\n\ndata: c\n\n", [b"a\nb", b"c"]),
        (b"data: a\n\n\n\ndata: b\n\n", [b"a", b"b"]),
        (b"data: a\n\nevent: x\ndata: b\n\n", [b"a", b"b"]),
        (b"data: a\nid: 1\n\n", [b"a"]),
    ],
)
def test_a_burst_of_whole_events(burst: bytes, expected: list[bytes]) -> None:
    parser = SSEParser()
    assert parser.feed(burst) == expected
    assert parser.feed(b'data: {"next":1}\n\n') == [b'{"next":1}']
    assert parser.flush() == []
