"""A provider whose host goes silent without closing the connection while a request
waits for its answer is found by TCP keep-alive, not after the read timeout; a live
provider that is slow to read a large request is not mistaken for one."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
from tests.support.scripted_server import post

from switchyard.errors import UpstreamTimeoutError
from switchyard.upstream import HttpTransport, pool
from switchyard.upstream.base import network_error
from switchyard.upstream.connection import ConnectionLostError, Http1Connection


@pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="Linux's option names")
async def test_connections_are_probed_when_quiet() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = await pool._open_socket("127.0.0.1", listener.getsockname()[1])
        with sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            # Not set: it would also cut off a live provider slow to read (below).
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


async def test_a_provider_slow_to_read_a_large_request_is_not_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Probes would give up after 1 + 1 s; the provider leaves the request unread for 3 s,
    # its window at zero meanwhile (a busy server, a full accept queue). Its kernel is
    # alive and says so: the answer must come.
    monkeypatch.setattr(pool, "PROBE_AFTER_SECONDS", 1)
    monkeypatch.setattr(pool, "PROBE_EVERY_SECONDS", 1)
    monkeypatch.setattr(pool, "PROBE_COUNT", 1)
    body = b"x" * (32 << 20)

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(busy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(timeout=30.0, connect_timeout=1.0)
    try:
        answer = await transport.send(post(f"http://127.0.0.1:{port}/v1/x", body))
        assert answer.status == 200
        assert await answer.read() == b"{}"
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


def test_the_kernels_timeout_says_the_host_stopped_responding() -> None:
    request = post("http://127.0.0.1:9/v1/chat/completions")
    dead = network_error(request, TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
    assert isinstance(dead, UpstreamTimeoutError)
    assert dead.status == 504
    assert "stopped responding" in dead.message
    slow = network_error(request, TimeoutError())  # our own read timeout
    assert "did not answer in time" in slow.message


@pytest.mark.parametrize(
    ("kernel_error", "raised"),
    [
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), TimeoutError),
        (OSError(errno.EHOSTUNREACH, "No route to host"), OSError),
        (ConnectionResetError(errno.ECONNRESET, "reset"), ConnectionLostError),
    ],
)
async def test_a_path_the_kernel_gave_up_on_is_not_a_close(
    kernel_error: OSError, raised: type[OSError]
) -> None:
    # What the probes end a connection with (a timeout, or the route's own error) is
    # passed on as it is; a reset is the provider closing, which may be sent again.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        loop = asyncio.get_running_loop()
        port = listener.getsockname()[1]
        _, conn = await loop.create_connection(
            lambda: Http1Connection(loop, 30.0), "127.0.0.1", port
        )
        waiting = asyncio.create_task(conn.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        await asyncio.sleep(0.05)
        conn.connection_lost(kernel_error)
        with pytest.raises(raised) as caught:
            await waiting
        assert type(caught.value) is raised
        conn.close()
