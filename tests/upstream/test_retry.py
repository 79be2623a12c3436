"""Retries around the real transport: only what the provider cannot have seen is sent again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from tests.support.scripted_server import Exchange, ScriptedServer, post

from switchyard.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError
from switchyard.upstream import HttpTransport, RetryTransport, retry
from switchyard.upstream.base import network_error
from switchyard.upstream.connection import RESEND_WINDOW


@pytest.fixture
async def retrying() -> AsyncIterator[RetryTransport]:
    t = RetryTransport(HttpTransport(timeout=5.0, connect_timeout=1.0), max_retries=2)
    yield t
    await t.aclose()


async def test_a_request_dropped_after_it_was_sent_is_not_sent_again(
    retrying: RetryTransport,
) -> None:
    async def answer(exchange: Exchange) -> bytes | None:
        await asyncio.sleep(RESEND_WINDOW + 0.2)  # the provider may be generating by now
        return None

    server = ScriptedServer(answer)
    base = await server.start()
    try:
        with pytest.raises(UpstreamUnavailableError, match="closed the connection") as caught:
            await retrying.send(post(base))
        assert caught.value.unsent is False
        await asyncio.sleep(0.1)
        assert len(server.exchanges) == 1  # three before: one try and two retries
    finally:
        await server.stop()


async def test_a_malformed_answer_is_not_sent_again(retrying: RetryTransport) -> None:
    async def answer(exchange: Exchange) -> bytes | None:
        return b"SSH-2.0-OpenSSH_9.2\r\n\r\n"

    server = ScriptedServer(answer)
    base = await server.start()
    try:
        with pytest.raises(UpstreamError, match="malformed HTTP") as caught:
            await retrying.send(post(base))
        assert caught.value.status == 502  # reached, and answered badly
        assert len(server.exchanges) == 1
    finally:
        await server.stop()


async def test_a_new_connection_dropped_at_once_is_not_sent_again(
    retrying: RetryTransport,
) -> None:
    async def answer(exchange: Exchange) -> bytes | None:
        return None  # read, then closed at once: say, a crash on this very request

    server = ScriptedServer(answer)
    base = await server.start()
    try:
        with pytest.raises(UpstreamUnavailableError, match="closed the connection"):
            await retrying.send(post(base))
        await asyncio.sleep(0.1)
        assert len(server.exchanges) == 1
    finally:
        await server.stop()


def test_messages_and_logs_keep_addresses_and_passwords_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = post("http://admin:pa/ss@vllm.internal:8000/v1/chat/completions")
    mixed = OSError(
        "Multiple exceptions: [Errno 113] Connect call failed ('2001:db8::7', 8000, 0, 0), "
        "[Errno 111] Connect call failed ('10.0.0.7', 8000)"
    )
    with caplog.at_level(logging.WARNING):
        error = network_error(request, mixed, unsent=True)
    assert "none of its host's addresses accepted a connection" in error.message
    assert "10.0.0.7" not in error.message and "2001:db8::7" not in error.message
    assert "10.0.0.7" in caplog.text  # the operator's log has them
    assert "pa/ss" not in caplog.text and "***@vllm.internal:8000/v1" in caplog.text


async def test_a_refused_connection_is_marked_unsent() -> None:
    port = await _closed_port()
    transport = HttpTransport(timeout=1.0, connect_timeout=1.0)
    try:
        with pytest.raises(UpstreamUnavailableError, match="cannot be reached") as caught:
            await transport.send(post(f"http://127.0.0.1:{port}"))
        assert caught.value.unsent is True
        assert "Connection refused" in caught.value.message
        assert "127.0.0.1" not in caught.value.message  # internal addresses go to the log
    finally:
        await transport.aclose()


async def test_a_connect_timeout_names_connect_timeout_and_is_unsent() -> None:
    # Accepts TCP, never speaks TLS: the handshake, part of connecting, never ends.
    held: list[asyncio.StreamWriter] = []
    listener = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    transport = HttpTransport(timeout=5.0, connect_timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeoutError, match="connect_timeout") as caught:
            await transport.send(post(f"https://127.0.0.1:{port}"))
        assert caught.value.unsent is True
    finally:
        await transport.aclose()
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()


async def _closed_port() -> int:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(listener.sockets[0].getsockname()[1])
    listener.close()
    await listener.wait_closed()
    return port


@pytest.mark.parametrize(("max_retries", "header"), [(1, "false"), (0, None)])
async def test_a_client_is_asked_not_to_retry_only_what_was_retried_here(
    max_retries: int, header: str | None
) -> None:
    port = await _closed_port()
    transport = RetryTransport(
        HttpTransport(timeout=1.0, connect_timeout=1.0), max_retries=max_retries
    )
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            await transport.send(post(f"http://127.0.0.1:{port}"))
        assert caught.value.headers.get("x-should-retry") == header
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),  # the readable one counts
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),  # a date: 10 s after now
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_the_wait_a_provider_asks_for_is_read_in_each_form(
    headers: dict[str, str], wait: float | None
) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert retry._retry_after(headers, now=now) == wait


def test_the_providers_wait_counts_only_when_positive_and_under_a_minute() -> None:
    assert retry.backoff(0, 2.5) == 2.5
    for asked in (None, 0.0, -3.0, 120.0):  # none, "now", a date past, too long
        for attempt, full in ((0, 0.5), (1, 1.0), (5, 8.0)):
            waits = {retry.backoff(attempt, asked) for _ in range(50)}
            assert all(0.75 * full <= w <= full for w in waits)
            assert len(waits) > 1  # jittered: retries refused together spread out
