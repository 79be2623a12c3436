"""A provider whose host goes silent without closing the connection is given up on by
the kernel (keep-alive probes, a limit on unacknowledged bytes), not after the read
timeout: the request ends in a 504 that says so."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from tests.support.scripted_server import post

from switchyard.errors import UpstreamTimeoutError
from switchyard.upstream import HttpTransport, pool


@pytest.fixture
def deaf_port() -> Iterator[int]:
    """A port whose connections are never accepted, so never read: once the kernel's
    buffers fill, the client's bytes go unacknowledged, as they do when a provider's
    host has vanished."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield listener.getsockname()[1]


async def test_connections_probe_a_quiet_provider(deaf_port: int) -> None:
    sock = await pool._open_socket("127.0.0.1", deaf_port)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
    finally:
        sock.close()


async def test_a_provider_that_acknowledges_nothing_is_a_504_within_the_bound(
    monkeypatch: pytest.MonkeyPatch, deaf_port: int
) -> None:
    monkeypatch.setattr(pool, "DEAD_PEER_SECONDS", 1)
    url = f"http://127.0.0.1:{deaf_port}/v1/chat/completions"
    # The read timeout is far away: only the kernel's bound can end this in time.
    transport = HttpTransport(timeout=60.0, connect_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeoutError, match="stopped responding"):
            await asyncio.wait_for(transport.send(post(url, b"x" * (64 << 20))), 15)
    finally:
        await transport.aclose()
    assert time.monotonic() - started < 10
