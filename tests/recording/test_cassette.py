"""Cassette files: format, round trip, atomic and concurrent writes, record sessions."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import orjson
import pytest

from switchyard.recording import files
from switchyard.recording.cassette import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamEvent,
)
from switchyard.recording.files import (
    append_interaction,
    list_cassettes,
    load_cassette,
    save_cassette,
)


def _interaction(content: str = "Hi", *, stream: bool = False) -> Interaction:
    request = RecordedRequest(
        "POST",
        "/v1/chat/completions",
        body={"messages": [{"content": content, "role": "user"}], "model": "m"},
        headers={"content-type": "application/json"},
        query={"api-version": "2024-10-21"},
    )
    if stream:
        events = [
            StreamEvent({"choices": [{"delta": {"content": "Hel"}}]}, 120.5),
            StreamEvent({"choices": [{"delta": {"content": "lo"}}]}, 3.2),
            StreamEvent("[DONE]", 0.1),
        ]
        response = RecordedResponse(200, {"content-type": "text/event-stream"}, events=events)
    else:
        response = RecordedResponse(200, {"content-type": "application/json"}, body={"ok": 1})
    return Interaction("together", request, response, recorded_at="2026-01-02T03:04:05Z")


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    errors = RecordedResponse(429, {"retry-after": "2"}, body={"error": {"message": "slow"}})
    text = RecordedResponse(502, {"content-type": "text/plain"}, text="Bad Gateway")
    cassette = Cassette(
        name="mine",
        interactions=[
            _interaction(),
            _interaction(stream=True),
            Interaction("p", RecordedRequest("GET", "/v1/models"), errors, source="import"),
            Interaction("p", RecordedRequest("GET", "/v1/models"), text, test_id="t::x"),
        ],
        ignore_fields=["user", "seed"],
    )
    path = save_cassette(cassette, tmp_path / "mine.json")
    loaded = load_cassette(path)
    assert loaded.to_json() == cassette.to_json()
    assert loaded.ignore_fields == ["user", "seed"]
    assert [p.name for p in list_cassettes(tmp_path)] == ["mine.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_file_reads_like_the_request_and_its_events(tmp_path: Path) -> None:
    path = save_cassette(Cassette("readable", [_interaction(stream=True)]), tmp_path / "r.json")
    text = path.read_text()
    document = json.loads(text)
    interaction = document["interactions"][0]
    assert document["version"] == 1
    assert interaction["provider"] == "together"
    assert interaction["recorded_at"] == "2026-01-02T03:04:05Z"
    assert interaction["request"] == {
        "method": "POST",
        "path": "/v1/chat/completions",
        "query": {"api-version": "2024-10-21"},
        "headers": {"content-type": "application/json"},
        "body": {"messages": [{"content": "Hi", "role": "user"}], "model": "m"},
    }
    # One line per event, with its data as it went on the wire.
    assert '{"delay_ms":120.5,"data":{"choices":[{"delta":{"content":"Hel"}}]}}' in text
    assert '{"delay_ms":0.1,"data":"[DONE]"}' in text


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b'{"a":1,"b":[true,null]}', True),
        (b'{"a": 1}', False),  # orjson would drop the space
        (b'{"b":1,"a":2}', True),  # key order is kept
        (b'{"x":1.10}', False),  # 1.10 would come back as 1.1
        (b"[DONE]", False),
        (b'"a string"', False),  # would read back as raw text
        (b"not json", False),
        (b'{"big":123456789012345678901234567890}', False),
    ],
)
def test_stream_events_are_byte_identical(raw: bytes, parsed: bool) -> None:
    event = StreamEvent.from_raw(raw, 1.23)
    assert event.raw() == raw
    assert isinstance(event.data, str) is not parsed
    assert event.delay_ms == 1.2
    reloaded = StreamEvent(orjson.loads(orjson.dumps(event.to_json()))["data"])
    assert reloaded.raw() == raw


def test_a_broken_cassette_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"version": 1, "interactions": [{"provider": 1}]}')
    with pytest.raises(ValueError, match=r"bad\.json: not a Switchyard cassette"):
        load_cassette(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("{")
    with pytest.raises(ValueError, match=r"worse\.json: not valid JSON"):
        load_cassette(tmp_path / "worse.json")
    (tmp_path / "future.json").write_text('{"version": 9, "interactions": []}')
    with pytest.raises(ValueError, match="unsupported cassette version 9"):
        load_cassette(tmp_path / "future.json")


def test_appending_keeps_what_is_there_and_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_cassette(Cassette("c", [_interaction("one")], ignore_fields=["user"]), path)
    append_interaction(path, _interaction("two"))
    loaded = load_cassette(path)
    contents = [i.request.body["messages"][0]["content"] for i in loaded.interactions]
    assert contents == ["one", "two"]
    assert loaded.ignore_fields == ["user"]


def test_a_new_record_session_overwrites_and_its_own_writes_append(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_cassette(Cassette("c", [_interaction("old")], ignore_fields=["seed"]), path)
    append_interaction(path, _interaction("first"), session="run-1")
    append_interaction(path, _interaction("second"), session="run-1")
    loaded = load_cassette(path)
    assert [i.request.body["messages"][0]["content"] for i in loaded.interactions] == [
        "first",
        "second",
    ]
    assert loaded.ignore_fields == ["seed"]
    append_interaction(path, _interaction("again"), session="run-2")
    assert len(load_cassette(path).interactions) == 1


def test_appends_write_what_a_whole_save_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    save_cassette(Cassette("c", [_interaction("saved")], ignore_fields=["user"]), path)
    append_interaction(path, _interaction("first", stream=True))
    # Later appends splice into the bytes written last: the cassette is not read again.
    monkeypatch.setattr(files, "load_cassette", lambda path: pytest.fail("read again"))
    for n in range(3):
        append_interaction(path, _interaction(f"next-{n}", stream=n == 1))
    monkeypatch.undo()
    loaded = load_cassette(path)
    contents = [i.request.body["messages"][0]["content"] for i in loaded.interactions]
    assert contents == ["saved", "first", "next-0", "next-1", "next-2"]
    assert loaded.ignore_fields == ["user"]
    whole = save_cassette(loaded, tmp_path / "whole.json")
    assert path.read_bytes() == whole.read_bytes()


def test_a_new_session_whose_first_write_failed_still_starts_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.json"
    append_interaction(path, _interaction("last run"), session="run-1")

    def disk_full(target: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_write", disk_full)
    with pytest.raises(OSError, match="No space"):
        append_interaction(path, _interaction("lost"), session="run-2")
    monkeypatch.undo()
    append_interaction(path, _interaction("this run"), session="run-2")
    loaded = load_cassette(path).interactions
    assert [i.request.body["messages"][0]["content"] for i in loaded] == ["this run"]


def test_a_cassette_another_process_wrote_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    append_interaction(path, _interaction("mine-1"), session="shared")
    theirs = load_cassette(path)
    theirs.interactions.append(_interaction("theirs"))
    save_cassette(theirs, path)  # as another worker would: this process did not write it
    append_interaction(path, _interaction("mine-2"), session="shared")
    loaded = load_cassette(path).interactions
    assert [i.request.body["messages"][0]["content"] for i in loaded] == [
        "mine-1",
        "theirs",
        "mine-2",
    ]


def _append_many(path: str, worker: int, count: int) -> None:
    for n in range(count):
        append_interaction(Path(path), _interaction(f"{worker}-{n}"), session="shared")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 15)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    contents = {i.request.body["messages"][0]["content"] for i in load_cassette(path).interactions}
    assert contents == {f"{w}-{n}" for w in range(4) for n in range(15)}
    # Each writer's own interactions stay in the order it wrote them.
    order = [i.request.body["messages"][0]["content"] for i in load_cassette(path).interactions]
    for w in range(4):
        mine = [c for c in order if c.startswith(f"{w}-")]
        assert mine == [f"{w}-{n}" for n in range(15)]
