"""The gathering transport (fewer writes, same bytes, same order, nothing left waiting)
and the protocol's extension that tells a stream its client has left."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import uvicorn
from tests.support.fake_openai import fake_openai
from tests.support.server import ServerHandle, thread_server
from uvicorn.server import ServerState

from switchyard.server import protocol
from switchyard.server.protocol import CLIENT_GONE, GatheringTransport, HttpProtocol

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.buffered = 0  # bytes written and not yet taken by the client

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def _next_iteration() -> None:
    # call_soon callbacks scheduled now run before this sleep(0) resumes us... twice,
    # since the flush itself is one iteration away.
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _gathering() -> tuple[GatheringTransport, RecordingTransport]:
    inner = RecordingTransport()
    wrapper = GatheringTransport(cast(asyncio.Transport, inner), asyncio.get_running_loop())
    return wrapper, inner


async def test_a_head_goes_out_with_its_body_in_one_write() -> None:
    wrapper, inner = _gathering()
    wrapper.write(HEAD)
    assert inner.writes == []  # held for the body
    wrapper.write(b"ok")
    assert inner.writes == [HEAD + b"ok"]  # at once, not at the end of the iteration


async def test_a_head_alone_is_written_at_the_end_of_the_iteration() -> None:
    wrapper, inner = _gathering()
    wrapper.write(HEAD)
    await _next_iteration()
    assert inner.writes == [HEAD]
    wrapper.write(b"ok")  # the body arriving later goes out by itself, at once
    assert inner.writes == [HEAD, b"ok"]


async def test_a_burst_after_the_first_event_is_one_write_in_order() -> None:
    wrapper, inner = _gathering()
    wrapper.write(HEAD)
    wrapper.write(b"event 1 ")
    for n in range(2, 6):
        wrapper.write(f"event {n} ".encode())
    assert inner.writes == [HEAD + b"event 1 "]  # the first event is not delayed
    await _next_iteration()
    assert inner.writes == [HEAD + b"event 1 ", b"event 2 event 3 event 4 event 5 "]


async def test_events_in_separate_iterations_are_forwarded_at_once() -> None:
    wrapper, inner = _gathering()
    for n in range(3):
        wrapper.write(f"event {n}".encode())
        assert inner.writes[-1] == f"event {n}".encode()
        await _next_iteration()
    assert len(inner.writes) == 3


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    wrapper, inner = _gathering()
    wrapper.write(HEAD)
    wrapper.close()
    assert inner.writes == [HEAD] and inner.closed

    wrapper, inner = _gathering()
    wrapper.write(b"one")
    wrapper.write(b"two")  # held for the end of the iteration
    wrapper.abort()
    await _next_iteration()
    assert inner.writes == [b"one"] and inner.aborted


async def test_nothing_is_written_once_the_transport_is_closing() -> None:
    wrapper, inner = _gathering()
    wrapper.write(b"one")
    wrapper.write(b"two")
    inner.closed = True  # the client left before the end of the iteration
    await _next_iteration()
    assert inner.writes == [b"one"]


async def test_other_attributes_pass_through() -> None:
    wrapper, _ = _gathering()
    assert wrapper.get_extra_info("peername") == ("127.0.0.1", 5)
    assert wrapper.get_extra_info("sslcontext", "none") == "none"
    assert wrapper.is_closing() is False


def test_every_method_of_a_transport_is_its_own() -> None:
    # No __getattr__ forwards the rest: a method asyncio.Transport has and the wrapper
    # does not define would be the base class's, which raises NotImplementedError.
    public = {name for name in dir(asyncio.Transport) if not name.startswith("_")}
    assert public <= set(vars(GatheringTransport))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with thread_server({"providers": []}) as handle:  # served through HttpProtocol
        yield handle


@pytest.mark.parametrize("size", [0, 5, 300_000])
def test_responses_of_any_size_arrive_whole_over_real_http(server: ServerHandle, size: int) -> None:
    # Many requests on one keep-alive connection, each complete and in order.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(20):
            response = client.get("/v1/health")
            assert response.json() == {"status": "OK"}
        big = client.post("/v1/chat/completions", content=b"x" * size)
        assert big.status_code in (400, 413)
        assert "error" in big.json()
        document = client.get("/openapi.json")  # a larger answer, also whole
        assert document.json()["openapi"].startswith("3.")


def _read_responses(sock: socket.socket, count: int, head_only: bool = False) -> list[bytes]:
    """``count`` whole responses (Content-Length bodies) read off ``sock``."""
    data, responses = b"", []
    sock.settimeout(5)
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").lower()
            length = 0 if head_only else int(head.split("content-length: ")[1].split("\r\n")[0])
            end = head_end + 4 + length
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection early"
        data += chunk
    assert data == b"", "bytes beyond the expected responses"
    return responses


def test_pipelined_head_and_closing_requests_get_whole_answers(server: ServerHandle) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    get = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(get + get + get)  # pipelined: three answers, in order, whole
        for answer in _read_responses(sock, 3):
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b'{"status":"OK"}')
        sock.sendall(b"HEAD /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        (head,) = _read_responses(sock, 1, head_only=True)
        assert head.startswith(b"HTTP/1.1 200 ")
        sock.sendall(get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        (last,) = _read_responses(sock, 1)
        assert last.endswith(b'{"status":"OK"}')
        assert sock.recv(1) == b""  # and then the server closed the connection


def test_an_idle_connection_outlives_the_clients_own_idle_expiry(server: ServerHandle) -> None:
    # httpx (under the openai SDK) drops idle connections after 5 s; a server that
    # closes them at 5 s too (uvicorn's default) races with a client reusing one.
    port = int(server.url.rsplit(":", 1)[1])
    get = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(get)
        _read_responses(sock, 1)
        time.sleep(6)
        sock.sendall(get)
        (answer,) = _read_responses(sock, 1)
        assert answer.endswith(b'{"status":"OK"}')


async def _client_of_a_stream() -> tuple[HttpProtocol, RecordingTransport, Any]:
    """An HttpProtocol with a request in, and the request's CLIENT_GONE ``watch``."""
    scopes: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)

    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    protocol = HttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    inner = RecordingTransport()
    protocol.connection_made(cast(asyncio.Transport, inner))
    protocol.data_received(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    await _next_iteration()
    return protocol, inner, scopes[0]["extensions"][CLIENT_GONE]["watch"]


async def test_a_watched_client_that_leaves_is_reported_once_and_reading_resumes() -> None:
    protocol, inner, watch = await _client_of_a_stream()
    inner.reading = False  # as uvicorn leaves it after a large body in one piece
    protocol.flow.read_paused = True
    calls: list[str] = []
    watch(lambda: calls.append("gone"))
    assert inner.reading  # else the client's leaving goes unnoticed
    protocol.connection_lost(None)
    assert calls == ["gone"]
    protocol.connection_lost(None)
    assert calls == ["gone"]


async def test_a_client_gone_before_the_watch_starts_is_reported_at_once() -> None:
    protocol, _, watch = await _client_of_a_stream()
    protocol.connection_lost(None)  # the client left while the provider was to answer
    calls: list[str] = []
    watch(lambda: calls.append("gone"))
    assert calls == ["gone"]


async def test_a_watch_withdrawn_is_not_called() -> None:
    protocol, _, watch = await _client_of_a_stream()
    calls: list[str] = []
    watch(lambda: calls.append("gone"))
    watch(None)  # the stream ended
    protocol.connection_lost(None)
    assert calls == []


def test_connections_that_never_finish_a_request_are_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "REQUEST_STALL_SECONDS", 0.5)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n"
    with thread_server({"providers": []}) as handle:
        port = int(handle.url.rsplit(":", 1)[1])
        stalled = []
        for sent in (
            b"",
            head[:20],
            head + b"\r\n" + b"{" * 10,
        ):  # nothing, half a head, half a body
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(sent)
            stalled.append(sock)
        # A head a byte at a time (slow loris) has the stall time in all; a body may be
        # slow as long as it keeps coming (a large upload on a slow link).
        trickled = socket.create_connection(("127.0.0.1", port))
        body = b'{"model": "nope", "input": "x"}'
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        started = time.monotonic()
        for i, byte in enumerate(body):  # over 1.5 s, never silent for long: answered
            slow.sendall(bytes([byte]))
            with contextlib.suppress(OSError):
                trickled.sendall(head[i : i + 1])
            time.sleep(0.05)
        assert time.monotonic() - started > 1.5
        trickled.settimeout(0.1)  # it was still sending when its time ran out
        assert trickled.recv(1024) == b""
        trickled.close()
        for sock in stalled:
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 3
            sock.close()
        slow.settimeout(5)
        assert b'"model_not_found"' in _read_responses(slow, 1)[0]
        slow.close()


def test_a_head_over_the_bound_gets_a_431(server: ServerHandle) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        with contextlib.suppress(OSError):  # closed once past the bound
            for _ in range(1024):  # until closed: the first read a head takes is not counted
                sock.sendall(b"a" * 4096)
                time.sleep(0.002)
        head, _, body = _read_until_closed(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert "64 KiB" in json.loads(body)["error"]["message"]
    with httpx.Client(base_url=server.url) as client:  # a head just under it: served
        headers = {"X-Big": "a" * (protocol.MAX_HEAD_BYTES - 1024)}
        assert client.get("/v1/health", headers=headers).status_code == 200


def test_a_request_pipelined_behind_a_slow_answer_does_not_count_as_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The second request's body is half sent when uvicorn stops reading (it waits for
    # the first answer); that wait outlasting the stall timeout must not cut the first.
    monkeypatch.setattr(protocol, "REQUEST_STALL_SECONDS", 0.5)
    with (
        fake_openai() as upstream,
        thread_server({"providers": [upstream.provider_config()]}) as handle,
    ):
        port = int(handle.url.rsplit(":", 1)[1])
        slow = b'{"model": "fake/m", "messages": [{"role": "user", "content": "hi"}], "fake_delay": 1.5}'
        first = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(slow), slow)
        )
        second = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\n{"
        )
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(first + second)
            sock.settimeout(5)
            data = b""
            while b"echo: hi" not in data:
                chunk = sock.recv(65536)
                assert chunk, "the connection was closed before the first answer"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/health HTTP/1.1\r\nHo st: x\r\n\r\n",
    ],
)
def test_a_request_that_cannot_be_parsed_gets_an_openai_error(
    server: ServerHandle, request_bytes: bytes
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request_bytes)
        (answer,) = _read_responses(sock, 1)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert re.search(rb"\r\nx-request-id: req_[0-9a-f]{24}\r\n", head)  # as every answer
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and "malformed" in error["message"]


async def test_a_client_that_stops_reading_is_dropped_and_one_that_reads_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "SEND_STALL_SECONDS", 0.1)
    http, inner, _ = await _client_of_a_stream()
    inner.buffered = 900_000  # one large answer, written whole: its buffer is full
    http.pause_writing()
    for _ in range(4):  # read slowly but steadily: longer than the period in all
        await asyncio.sleep(0.06)
        inner.buffered -= 100_000
    assert not inner.aborted
    http.resume_writing()  # nearly all read
    http.pause_writing()  # the next burst fills it again, and nothing more is read
    await asyncio.sleep(0.25)
    assert inner.aborted  # dropped, which ends its stream


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
def test_a_stream_to_an_http_1_0_client_is_not_chunked(version: bytes) -> None:
    # HTTP/1.0 has no chunked encoding: a 1.0 client would read the chunk sizes as text.
    # Its stream ends when the connection closes; a 1.1 client's is still chunked.
    body = json.dumps(
        {"model": "fake/m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/%s\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (version, len(body), body)
    )
    with (
        fake_openai() as upstream,
        thread_server({"providers": [upstream.provider_config()]}) as handle,
        socket.create_connection(("127.0.0.1", int(handle.url.rsplit(":", 1)[1]))) as sock,
    ):
        sock.sendall(request)
        head, _, rest = _read_until_closed(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in head.lower()
    chunked = b"transfer-encoding: chunked" in head.lower()
    assert chunked == (version == b"1.1")
    events = rest if version == b"1.0" else b"".join(_unchunk(rest))
    assert events.startswith(b"data: {")
    assert events.endswith(b"data: [DONE]\n\n")
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in events.split(b"\n\n")
        if line.startswith(b"data: {")
    )
    assert text == "echo: hi"


def _unchunk(data: bytes) -> Iterator[bytes]:
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n"
            return
        yield data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


def test_a_whole_answer_to_an_http_1_0_client_keeps_its_length(server: ServerHandle) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /v1/models/nope HTTP/1.0\r\n\r\n")
        head, _, body = _read_until_closed(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"content-length: %d" % len(body) in head.lower()
    assert json.loads(body)["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "upgrade",
    [
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ],
)
def test_a_request_offering_another_protocol_is_refused_and_its_body_never_read_as_a_request(
    server: ServerHandle, upgrade: bytes
) -> None:
    # httptools skips the body of an Upgrade request; read as the next request, this
    # body would be answered (a smuggled request). One OpenAI 400, then the close.
    smuggled = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\n%s"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (upgrade, len(smuggled))
        )
        time.sleep(0.2)  # the body in a read of its own, as a slow client sends it
        with contextlib.suppress(OSError):  # already closed: nothing of it is read
            sock.sendall(smuggled)
        data = _read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"x-request-id: req_" in head
    error = json.loads(body)["error"]
    assert "does not switch protocols" in error["message"]
    assert b'{"status":"OK"}' not in data


def test_a_request_offering_another_protocol_never_reaches_its_handler() -> None:
    # Refused, its handler must not run (a DELETE needs no body); queued behind another
    # answer, the refusal waits for that answer to be whole.
    def chat(delay: float, upgrade: bytes = b"") -> bytes:
        body = json.dumps(
            {
                "model": "fake/m",
                "messages": [{"role": "user", "content": "hi"}],
                "fake_delay": delay,
            }
        ).encode()
        return (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n%s"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (upgrade, len(body), body)
        )

    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    with (
        fake_openai() as upstream,
        thread_server({"providers": [upstream.provider_config()]}) as handle,
    ):
        port = int(handle.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(chat(0, upgrade))
            alone = _read_until_closed(sock)
        time.sleep(0.3)
        assert alone.startswith(b"HTTP/1.1 400 ")
        assert upstream.calls == 0  # the provider was never called
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(chat(0.5) + chat(0, upgrade))
            data = _read_until_closed(sock)
        time.sleep(0.3)
        first, _, rest = data.partition(b"HTTP/1.1 400 ")
        assert first.startswith(b"HTTP/1.1 200 ")
        assert first.endswith(b"}")  # whole, then the refusal
        assert b"does not switch protocols" in rest
        assert upstream.calls == 1
