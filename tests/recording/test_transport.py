"""The recorder on the upstream seam: record, replay, record-if-missing; transport_for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.support.recorded_upstream import RecordedUpstream, exchanges_for, recordings_root

from switchyard.config import config_from_dict
from switchyard.errors import ConfigError, ReplayMissError
from switchyard.hidden import configured_secrets
from switchyard.recording import scrub
from switchyard.recording import transport as transport_module
from switchyard.recording.cassette import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamEvent,
)
from switchyard.recording.files import load_cassette, save_cassette
from switchyard.recording.library import CassetteLibrary
from switchyard.recording.sse import EventTooLarge, SSEParser
from switchyard.recording.transport import RecordingTransport, finish_reads, recorded_request
from switchyard.transports import transport_for, transports_for
from switchyard.upstream import HttpTransport, RetryTransport, UpstreamRequest

SECRETS = ("sk-live-SECRET", "azure-SECRET", "anthropic-SECRET", "gemini-SECRET")
CHAT_BODY = {
    "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo-Free",
    "messages": [{"role": "user", "content": "What's the name of the Sun in latin?"}],
    "stream": True,
}


def _request(base: str, body: Any, *, path: str = "/v1/chat/completions") -> UpstreamRequest:
    return UpstreamRequest(
        provider_id="together",
        method="POST" if body is not None else "GET",
        url=f"{base}{path}?key={SECRETS[3]}&api-version=2024-10-21",
        headers={
            "Authorization": f"Bearer {SECRETS[0]}",
            "api-key": SECRETS[1],
            "x-api-key": SECRETS[2],
            "User-Agent": "switchyard/test",
            "Content-Type": "application/json",
        },
        json=body,
        content=None if body is None else orjson.dumps(body),
        stream=bool(body and body.get("stream")),
    )


async def _drain(response: Any) -> list[bytes]:
    return [chunk async for chunk in response.aiter_bytes()]


def _events(chunks: list[bytes]) -> list[bytes]:
    parser = SSEParser()
    found = [data for chunk in chunks for data in parser.feed(chunk)]
    return found + parser.flush()


# -- scrubbing -----------------------------------------------------------------------------


def test_secrets_are_dropped_from_headers_and_query() -> None:
    headers = {
        "Authorization": "Bearer x",
        "API-Key": "x",
        "x-api-key": "x",
        "X-Goog-Api-Key": "x",
        "Cookie": "x",
        "X-Custom-Token": "x",
        "Content-Type": "application/json",
        "User-Agent": "noise",
        "OpenAI-Organization": "org-1",
    }
    assert scrub.request_headers(headers) == {
        "content-type": "application/json",
        "openai-organization": "org-1",
    }
    query = "key=x&api_key=x&access_token=x&sig=x&api-version=2024&alt=sse"
    assert scrub.request_query(query) == {"api-version": "2024", "alt": "sse"}
    kept = scrub.response_headers({"Content-Type": "a", "Retry-After": "2", "Set-Cookie": "x"})
    assert kept == {"content-type": "a", "retry-after": "2"}


def test_a_request_is_kept_without_host_prefix_or_secrets() -> None:
    request = _request("https://api.fireworks.ai/inference/v1/v1", CHAT_BODY)
    recorded = recorded_request(request)
    assert recorded.path == "/v1/chat/completions"
    assert recorded.query == {"api-version": "2024-10-21"}
    assert recorded.headers == {"content-type": "application/json"}
    assert list(recorded.body) == sorted(CHAT_BODY)


# -- against a real local upstream ----------------------------------------------------------

needs_recordings = pytest.mark.skipif(not recordings_root().is_dir(), reason="no shared recordings")


@pytest.fixture
async def upstream() -> AsyncIterator[RecordedUpstream]:
    server = RecordedUpstream(exchanges_for("together"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _recorder(tmp_path: Path, mode: str, inner: Any = None, **kwargs: Any) -> RecordingTransport:
    load = "none" if mode == "record" else "directory"
    session = "test-session" if mode == "record" else None
    library = CassetteLibrary(tmp_path, "rec", load=load, session=session)
    return RecordingTransport("together", library, mode, inner, **kwargs)


@needs_recordings
async def test_record_then_replay_gives_the_same_bytes(
    tmp_path: Path, upstream: RecordedUpstream
) -> None:
    live = _recorder(tmp_path, "record", HttpTransport(timeout=10, connect_timeout=5))
    try:
        response = await live.send(_request(upstream.url + "/v1", CHAT_BODY))
        recorded_chunks = await _drain(response)
    finally:
        await live.aclose()
    assert upstream.auth_headers == [f"Bearer {SECRETS[0]}"]  # the key did go upstream

    text = (tmp_path / "rec.json").read_text()
    for secret in SECRETS:
        assert secret not in text
    (interaction,) = load_cassette(tmp_path / "rec.json").interactions
    assert interaction.provider == "together"
    assert interaction.recorded_at is not None
    assert interaction.request.headers == {"content-type": "application/json"}
    assert interaction.response.headers["content-type"].startswith("text/event-stream")
    assert interaction.response.events is not None
    assert interaction.response.events[-1].data == "[DONE]"

    replay = _recorder(tmp_path, "replay")
    replayed = await replay.send(_request("http://elsewhere:1/v1", CHAT_BODY))
    assert replayed.headers["content-type"] == "text/event-stream"
    replayed_chunks = await _drain(replayed)
    assert b"".join(replayed_chunks) == b"".join(recorded_chunks)
    assert _events(replayed_chunks) == _events(recorded_chunks)
    # Event by event, not in one piece.
    assert len(replayed_chunks) == len(interaction.response.events) > 2


@needs_recordings
async def test_upstream_errors_are_recorded_and_replayed_as_errors(
    tmp_path: Path, upstream: RecordedUpstream
) -> None:
    unknown = {**CHAT_BODY, "stream": False, "messages": [{"role": "user", "content": "?"}]}
    live = _recorder(tmp_path, "record", HttpTransport(timeout=10, connect_timeout=5))
    try:
        response = await live.send(_request(upstream.url + "/v1", unknown))
        recorded = await response.read()
    finally:
        await live.aclose()
    assert response.status == 400
    replayed = await _recorder(tmp_path, "replay").send(_request("http://x/v1", unknown))
    assert replayed.status == 400
    assert await replayed.read() == recorded
    assert replayed.headers["content-type"] == "application/json"


# -- with a scripted inner transport --------------------------------------------------------


class _Answer:
    def __init__(self, chunks: list[bytes], status: int = 200, pause: float = 0.0) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {"Content-Type": "text/event-stream"}
        self.ends_at_close = False
        self._chunks = chunks
        self._pause = pause
        self.closed = False
        self.given = 0  # chunks read from it so far

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        for chunk in self._chunks:
            await asyncio.sleep(self._pause)  # a slow provider
            self.given += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


class _Scripted:
    def __init__(self, *answers: _Answer) -> None:
        self.answers = list(answers)
        self.sent: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> _Answer:
        self.sent.append(request)
        return self.answers.pop(0)

    async def aclose(self) -> None:
        pass


STREAM = [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"data: [DONE]\n\n"]


async def test_record_if_missing_replays_what_it_has_and_records_the_rest(tmp_path: Path) -> None:
    other = {**CHAT_BODY, "stream": False}
    answers = [_Answer(STREAM), _Answer([b'{"n":2}']), _Answer([b'{"other":true}'])]
    inner = _Scripted(*answers)
    transport = _recorder(tmp_path, "record-if-missing", inner)
    first = await _drain(await transport.send(_request("http://up/v1", CHAT_BODY)))
    assert b"".join(first) == b"".join(STREAM)
    # The same request again in this run is recorded too: a replay of the run asks twice.
    again = await transport.send(_request("http://up/v1", CHAT_BODY))
    assert await again.read() == b'{"n":2}'
    assert await (await transport.send(_request("http://up/v1", other))).read() == b'{"other":true}'
    assert len(inner.sent) == 3
    assert len(load_cassette(tmp_path / "rec.json").interactions) == 3
    # The next run replays all three, in order, and calls nobody.
    rerun = _recorder(tmp_path, "record-if-missing", _Scripted())
    replayed = [await _drain(await rerun.send(_request("http://up/v1", CHAT_BODY))) for _ in "12"]
    assert [b"".join(r) for r in replayed] == [b"".join(STREAM), b'{"n":2}']
    assert await (await rerun.send(_request("http://up/v1", other))).read() == b'{"other":true}'


class _Cut(_Answer):
    """A provider whose connection breaks after its chunks."""

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        async for chunk in super().aiter_bytes():
            yield chunk
        raise ConnectionResetError("cut")


async def test_record_if_missing_asks_for_the_model_list_once(tmp_path: Path) -> None:
    inner = _Scripted(_Answer([b'{"data": []}']))
    transport = _recorder(tmp_path, "record-if-missing", inner)
    for _ in range(3):  # the registry's refreshes
        response = await transport.send(_request("http://up/v1", None, path="/v1/models"))
        assert orjson.loads(await response.read()) == {"data": []}
    assert len(inner.sent) == 1
    assert len(load_cassette(tmp_path / "rec.json").interactions) == 1


async def test_a_stream_the_provider_cuts_is_not_written(tmp_path: Path) -> None:
    transport = _recorder(tmp_path, "record", _Scripted(_Cut(STREAM[:2])))
    response = await transport.send(_request("http://up/v1", CHAT_BODY))
    with pytest.raises(ConnectionResetError):
        await _drain(response)
    assert not (tmp_path / "rec.json").exists()


async def test_a_stream_whose_event_never_ends_is_not_read_on_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lines ended by one newline only: one event without end. The provider's parser
    # refuses it first (openai_compat); the recorder, reading on for the cassette, stops
    # at its own bound instead of holding all that is sent.
    monkeypatch.setattr(transport_module, "RECORDED_EVENT_BYTES", 1000)
    answer = _Answer([b'data: {"n":1}\n' * 10] * 100)  # 14 KB
    transport = _recorder(tmp_path, "record", _Scripted(answer))
    response = await transport.send(_request("http://up/v1", CHAT_BODY))
    with pytest.raises(EventTooLarge):
        await _drain(response)
    assert answer.given < 10 and answer.closed
    assert not (tmp_path / "rec.json").exists()


@pytest.mark.parametrize("leaves", ["stops reading", "is cancelled mid-read"])
async def test_a_stream_the_client_leaves_early_is_read_on_and_written(
    tmp_path: Path, leaves: str
) -> None:
    answer = _Answer(STREAM, pause=0.01)
    transport = _recorder(tmp_path, "record", _Scripted(answer))
    response = await transport.send(_request("http://up/v1", CHAT_BODY))
    chunks = response.aiter_bytes()
    if leaves == "stops reading":
        await anext(chunks)
        await chunks.aclose()  # type: ignore[attr-defined]
    else:  # as the server cancels a stream's task when its client disconnects
        reader = asyncio.create_task(_drain(response))
        await asyncio.sleep(0.015)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    await response.aclose()
    assert not answer.closed  # still being read, for the cassette
    await finish_reads(within=5)
    assert answer.closed
    events = load_cassette(tmp_path / "rec.json").interactions[0].response.events
    assert events is not None
    assert [event.raw() for event in events] == [b'{"n":1}', b'{"n":2}', b"[DONE]"]


KEY = "sk-live-ECHOED-123"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [401, 200])  # some send an error object with a 200
async def test_a_key_the_provider_echoes_is_not_written(
    tmp_path: Path, stream: bool, status: int
) -> None:
    echo = b'{"error": {"message": "Invalid key ' + KEY.encode() + b' (pw hunter22)"}}'
    answer = _Answer([b"data: " + echo + b"\n\n"] if stream else [echo], status=status)
    library = CassetteLibrary(tmp_path, "rec", load="none", session="s")
    secrets = configured_secrets(KEY, "http://u:hunter22@up/v1")
    transport = RecordingTransport(
        "together", library, "record", _Scripted(answer), secrets=secrets
    )
    response = await transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": stream}))
    got = b"".join(await _drain(response)) if stream else await response.read()
    assert KEY.encode() in got  # the client's error is quoted elsewhere (providers.quoting)
    text = (tmp_path / "rec.json").read_text()
    assert KEY not in text and "hunter22" not in text
    assert "Invalid key ***" in text


async def test_secrets_are_hidden_in_the_text_of_errors_only(tmp_path: Path) -> None:
    # A short key ("ollama") is also in a success's fingerprint; digits of a password
    # may be in a number.
    ok = b'{"system_fingerprint": "fp_ollama", "created": 1234567}'
    refused = b'{"error": {"message": "bad key ollama", "code": 1234567}}'
    answers = [_Answer([ok]), _Answer([refused], status=401)]
    library = CassetteLibrary(tmp_path, "rec", load="none", session="s")
    secrets = configured_secrets("ollama", "http://u:123456@up/v1")
    transport = RecordingTransport("o", library, "record", _Scripted(*answers), secrets=secrets)
    for _ in answers:
        await (
            await transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": False}))
        ).read()
    bodies = [i.response.body for i in load_cassette(tmp_path / "rec.json").interactions]
    assert bodies == [
        {"system_fingerprint": "fp_ollama", "created": 1234567},
        {"error": {"message": "bad key ***", "code": 1234567}},
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cassette_that_cannot_be_written_costs_the_client_nothing(
    tmp_path: Path, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "rec.json").mkdir()  # as a full disk or a read-only folder would fail
    transport = _recorder(tmp_path, "record", _Scripted(_Answer(STREAM)))
    response = await transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": stream}))
    got = b"".join(await _drain(response)) if stream else await response.read()
    assert got == b"".join(STREAM)
    assert "was not written" in caplog.text and "rec.json" in caplog.text


async def test_record_mode_starts_a_broken_cassette_afresh(tmp_path: Path) -> None:
    (tmp_path / "rec.json").write_text("{ not json")
    transport = _recorder(tmp_path, "record", _Scripted(_Answer([b'{"ok":true}'])))
    response = await transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": False}))
    assert await response.read() == b'{"ok":true}'
    (interaction,) = load_cassette(tmp_path / "rec.json").interactions
    assert interaction.response.body == {"ok": True}


def test_an_event_that_is_not_utf8_can_be_written(tmp_path: Path) -> None:
    event = StreamEvent.from_raw(b'{"a": "\xff"}')
    interaction = Interaction(
        "p",
        RecordedRequest("POST", "/v1/chat/completions", body={}),
        RecordedResponse(200, {}, events=[event]),
    )
    save_cassette(Cassette(name="c", interactions=[interaction]), tmp_path / "c.json")
    (back,) = load_cassette(tmp_path / "c.json").interactions
    assert back.response.events is not None
    assert back.response.events[0].raw() == '{"a": "\ufffd"}'.encode()


class _SlowRead(_Answer):
    async def read(self) -> bytes:
        await asyncio.sleep(0.05)
        return await super().read()


async def test_an_answer_whose_client_leaves_mid_read_is_recorded(tmp_path: Path) -> None:
    transport = _recorder(tmp_path, "record", _Scripted(_SlowRead([b'{"ok":true}'])))
    response = await transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": False}))
    reader = asyncio.create_task(response.read())
    await asyncio.sleep(0.01)
    reader.cancel()  # the client left before the provider answered
    with pytest.raises(asyncio.CancelledError):
        await reader
    await finish_reads(within=5)
    (recorded,) = load_cassette(tmp_path / "rec.json").interactions
    assert recorded.response.body == {"ok": True}


class _SlowToAnswer(_Scripted):
    async def send(self, request: UpstreamRequest) -> _Answer:
        await asyncio.sleep(0.1)  # a model working before its first byte
        return await super().send(request)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_whose_client_leaves_before_it_comes_is_recorded(
    tmp_path: Path, stream: bool
) -> None:
    answer = _Answer(STREAM if stream else [b'{"ok":true}'])
    transport = _recorder(tmp_path, "record", _SlowToAnswer(answer))
    sending = asyncio.create_task(
        transport.send(_request("http://up/v1", {**CHAT_BODY, "stream": stream}))
    )
    await asyncio.sleep(0.01)
    sending.cancel()  # the client gave up while the provider was still working
    with pytest.raises(asyncio.CancelledError):
        await sending
    await finish_reads(within=5)  # a shutdown at once waits for the answer to come
    (recorded,) = load_cassette(tmp_path / "rec.json").interactions
    if stream:
        assert [e.raw() for e in recorded.response.events or ()] == [
            b'{"n":1}',
            b'{"n":2}',
            b"[DONE]",
        ]
    else:
        assert recorded.response.body == {"ok": True}
    assert answer.closed  # its connection released


@pytest.mark.parametrize("status", [200, 429])
async def test_a_streams_json_answer_whose_client_left_is_recorded_as_a_body(
    tmp_path: Path, status: int
) -> None:
    # As the provider would read it: an error, or one JSON document, is not events.
    answer = _Answer([b'{"error": {"message": "slow down"}}'], status=status)
    answer.headers = {"content-type": "application/json"}  # lower-case, as the protocol says
    transport = _recorder(tmp_path, "record", _SlowToAnswer(answer))
    sending = asyncio.create_task(transport.send(_request("http://up/v1", CHAT_BODY)))
    await asyncio.sleep(0.01)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await finish_reads(within=5)
    (recorded,) = load_cassette(tmp_path / "rec.json").interactions
    assert (recorded.response.status, recorded.response.events) == (status, None)
    assert recorded.response.body == {"error": {"message": "slow down"}}


async def test_a_slow_client_holds_the_provider_back(tmp_path: Path) -> None:
    events = [b'data: {"n":%d}\n\n' % n for n in range(500)]
    answer = _Answer([*events, b"data: [DONE]\n\n"])
    transport = _recorder(tmp_path, "record", _Scripted(answer))
    response = await transport.send(_request("http://up/v1", CHAT_BODY))
    chunks = response.aiter_bytes()
    await anext(chunks)
    await asyncio.sleep(0.05)
    assert answer.given < 100  # read ahead a little, not the whole stream into memory
    rest = [chunk async for chunk in chunks]
    assert len(rest) == 500
    await finish_reads(within=5)
    assert len(load_cassette(tmp_path / "rec.json").interactions[0].response.events or ()) == 501


async def test_a_shutdown_waits_for_streams_being_recorded_then_cuts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slow = _Answer(STREAM, pause=10)
    transport = _recorder(tmp_path, "record", _Scripted(slow))
    response = await transport.send(_request("http://up/v1", CHAT_BODY))
    reader = asyncio.create_task(_drain(response))  # a client still waiting for more
    await asyncio.sleep(0.01)
    await finish_reads(within=0.05)
    assert "1 answers still going at shutdown are not recorded" in caplog.text
    assert slow.closed
    assert not (tmp_path / "rec.json").exists()
    with pytest.raises(ConnectionError):  # told, not left waiting
        await asyncio.wait_for(reader, 2)


async def test_a_stream_is_written_when_done_comes_with_more_in_the_same_piece(
    tmp_path: Path,
) -> None:
    # A burst arrives as one piece; the consumer stops at [DONE] whatever follows it.
    burst = b"".join(STREAM) + b": keep-alive\n\ndata: {}\n\n"
    transport = _recorder(tmp_path, "record", _Scripted(_Answer([burst, b"data: {}\n\n"])))
    chunks = (await transport.send(_request("http://up/v1", CHAT_BODY))).aiter_bytes()
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    (interaction,) = load_cassette(tmp_path / "rec.json").interactions
    assert [e.raw() for e in interaction.response.events or []][:3] == _events(STREAM)


async def test_streams_record_their_timing_and_replay_it_on_request(tmp_path: Path) -> None:
    record = _recorder(tmp_path, "record", _Scripted(_Answer(STREAM, pause=0.05)))
    await _drain(await record.send(_request("http://up/v1", CHAT_BODY)))
    (interaction,) = load_cassette(tmp_path / "rec.json").interactions
    delays = [event.delay_ms for event in interaction.response.events or []]
    assert len(delays) == 3 and all(delay >= 40 for delay in delays)

    started = time.monotonic()
    await _drain(await _recorder(tmp_path, "replay").send(_request("http://x/v1", CHAT_BODY)))
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    paced = _recorder(tmp_path, "replay", realtime=True)
    await _drain(await paced.send(_request("http://x/v1", CHAT_BODY)))
    assert time.monotonic() - started >= 0.12


async def test_a_stream_recorded_after_a_retry_is_timed_from_the_retry(tmp_path: Path) -> None:
    # A realtime replay must not wait out the back-off again before the first event.
    busy = _Answer([b'{"error": {"message": "busy"}}'], status=503)
    busy.headers = {"retry-after-ms": "300"}
    retried = RetryTransport(_Scripted(busy, _Answer(STREAM, pause=0.01)), max_retries=1)
    record = _recorder(tmp_path, "record", retried)
    await _drain(await record.send(_request("http://up/v1", CHAT_BODY)))
    (interaction,) = load_cassette(tmp_path / "rec.json").interactions
    first = (interaction.response.events or [])[0]
    assert 5 <= first.delay_ms < 200  # the provider's 10 ms, not the 300 ms back-off


async def test_replay_has_no_network_and_misses_loudly(tmp_path: Path) -> None:
    answer = RecordedResponse(200, body={"data": []})
    request = RecordedRequest("GET", "/v1/models")
    save_cassette(
        Cassette("rec", [Interaction("together", request, answer)]), tmp_path / "rec.json"
    )
    transport = _recorder(tmp_path, "replay")
    listed = await transport.send(_request("http://nowhere.invalid/v1", None, path="/models"))
    assert orjson.loads(await listed.read()) == {"data": []}
    with pytest.raises(ReplayMissError) as caught:
        await transport.send(_request("http://nowhere.invalid/v1", CHAT_BODY))
    assert str(tmp_path / "rec.json") in caught.value.message


def test_stream_events_replay_with_exact_bytes_even_when_not_json() -> None:
    raw = [b'{"a": 1}', b"[DONE]"]
    events = [StreamEvent.from_raw(r) for r in raw]
    assert [e.raw() for e in events] == raw
    assert events[0].data == '{"a": 1}'


# -- choosing the transport -----------------------------------------------------------------


def _config(tmp_path: Path, providers: int = 1, **recording: Any) -> Any:
    providers_ = [
        {"id": i, "type": "openai_compatible", "base_url": f"http://{i}/v1", "api_key": "sk-a-key"}
        for i in "ab"[:providers]
    ]
    return config_from_dict({"providers": providers_, "recording": recording}, "<test>")


def test_transport_for_picks_by_mode(tmp_path: Path) -> None:
    live = transport_for(_config(tmp_path), _config(tmp_path).providers[0])
    assert isinstance(live, RetryTransport)
    config = _config(tmp_path, mode="replay", cassettes=str(tmp_path))
    replay = transport_for(config, config.providers[0])
    assert isinstance(replay, RecordingTransport)
    assert replay._inner is None  # no live transport exists in replay
    config = _config(tmp_path, mode="replay", cassettes=str(tmp_path), providers=2)
    first, second = transports_for(config).values()
    assert isinstance(first, RecordingTransport) and isinstance(second, RecordingTransport)
    assert first.library is second.library  # the providers of one server share it
    # ... and another server of the same process has its own, replay positions included.
    other = transports_for(config)[config.providers[0].id]
    assert isinstance(other, RecordingTransport) and other.library is not first.library
    config = _config(tmp_path, mode="record", cassettes=str(tmp_path / "new"))
    record = transport_for(config, config.providers[0])
    assert isinstance(record, RecordingTransport)
    assert isinstance(record._inner, RetryTransport)
    assert record._secrets == ("sk-a-key",)  # hidden in what it writes


def test_bad_recording_settings_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recording\.mode"):
        _config(tmp_path, mode="recrod")
    with pytest.raises(ConfigError, match=r"recording\.mode"):
        config_from_dict({}, "<test>", env={"SWITCHYARD_RECORD_MODE": "replya"})
    config = _config(tmp_path, mode="replay")
    with pytest.raises(ConfigError, match="no cassette directory"):
        transport_for(config, config.providers[0])
    config = _config(tmp_path, mode="replay", cassettes=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        transport_for(config, config.providers[0])
    with pytest.raises(ConfigError, match=r"recording\.cassette"):
        _config(tmp_path, cassette="../escape")
