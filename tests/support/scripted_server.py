"""A raw socket server that answers exactly what each test scripts, for the tests of
the HTTP transport (framing, keep-alive, TLS, proxies)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from switchyard.upstream import UpstreamRequest

# What a test's server does with one request: (head and body received) -> raw answer, or
# None to close the connection without answering.
Answer = Callable[["Exchange"], Awaitable[bytes | None]]
JSON_OK = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


class Exchange:
    def __init__(
        self, head: bytes, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.head, self.body, self.conn = head, b"", conn
        self.reader, self.writer = reader, writer

    def header(self, name: str) -> str | None:
        for line in self.head.decode().split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None


class ScriptedServer:
    """Accepts connections, reads requests one by one, answers with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.exchanges: list[Exchange] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    async def until(self, count: int) -> None:
        """Wait until ``count`` requests have arrived."""
        while len(self.exchanges) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def start(self, context: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if context else 'http'}://localhost:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                exchange = Exchange(head, conn, reader, writer)
                length = exchange.header("content-length")
                exchange.body = await reader.readexactly(int(length)) if length else b""
                self.exchanges.append(exchange)
                self._arrived.set()
                data = await self.answer(exchange)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def post(url: str, body: bytes = b'{"model":"m"}', **headers: str) -> UpstreamRequest:
    """A POST with ``headers`` (keyword names; ``_`` stands for ``-``)."""
    return UpstreamRequest(
        provider_id="p",
        method="POST",
        url=url,
        headers={"Content-Type": "application/json"}
        | {name.replace("_", "-"): value for name, value in headers.items()},
        content=body,
    )
