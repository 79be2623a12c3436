"""A minimal SSE relay: the floor a Python gateway sets for a paced stream (NOTES §28).

    python bench/relay_floor.py --mode push --port 18962 --upstream-port 18080

Streaming chat completions only: it reads a client's request, strips the ``openai/``
prefix from the model, sends it to the upstream on 127.0.0.1, and relays each event
of the answer with its ``id`` and ``model`` replaced, serialised again, in chunked
framing. No framework, validation, store, error handling or flow control: what is left
is what any Python relay must do per event (uvloop, httptools, orjson, the two
syscalls). ``--mode push`` relays each event inside the upstream connection's
``data_received``; ``--mode pull`` hands the pieces to a task through a future and
three async generators, as Switchyard's ASGI stream does.

Measured in NOTES §28 against Switchyard with the shared harness's upstream and its
``loadgen.py --stream --rate 10`` on the paced model, each target in turn.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import orjson
from fake_upstream import install_uvloop

from switchyard.recording.sse import DONE, SSEParser

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def relay_bytes(parser: SSEParser, piece: bytes, overrides: dict[str, Any]) -> bytes:
    """One chunked-framed write for the events completed by ``piece``."""
    out = []
    for data in parser.feed(piece):
        if data == DONE:
            out.append(b"data: [DONE]\n\n")
            continue
        chunk = orjson.loads(data)
        chunk.update(overrides)
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    payload = b"".join(out)
    return b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b""


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream, serving one client connection."""

    def __init__(self, client: Client, push: bool) -> None:
        self.client = client
        self.push = push
        self.parser = httptools.HttpResponseParser(self)
        self.sse = SSEParser()
        self.pieces: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.client.write(HEAD)

    def on_body(self, body: bytes) -> None:
        if self.push:
            self.client.write(relay_bytes(self.sse, body, self.client.overrides))
            return
        self.pieces.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        if self.push:
            self.client.write(LAST_CHUNK)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next_piece(self) -> bytes | None:
        while not self.pieces:
            if self.done:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        return self.pieces.popleft()

    async def body(self) -> AsyncIterator[bytes]:
        while (piece := await self.next_piece()) is not None:
            yield piece


async def _pieces(upstream: Upstream) -> AsyncIterator[bytes]:
    async for piece in upstream.body():
        yield piece


async def _events(upstream: Upstream, overrides: dict[str, Any]) -> AsyncIterator[bytes]:
    async for piece in _pieces(upstream):
        if framed := relay_bytes(upstream.sse, piece, overrides):
            yield framed


class Client(asyncio.Protocol):
    """One client connection; requests are answered one at a time."""

    def __init__(self, upstream_port: int, push: bool) -> None:
        self.upstream_port = upstream_port
        self.push = push
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.overrides: dict[str, Any] = {}
        self.upstream: Upstream | None = None
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None and data:
            self.transport.write(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = orjson.loads(b"".join(self.body))
        self.body = []
        self.overrides = {"id": "chatcmpl-floor", "model": request["model"]}
        request["model"] = request["model"].removeprefix("openai/")
        task = asyncio.get_running_loop().create_task(self.forward(orjson.dumps(request)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def forward(self, payload: bytes) -> None:
        if self.upstream is None:
            loop = asyncio.get_running_loop()
            _, self.upstream = await loop.create_connection(
                lambda: Upstream(self, self.push), "127.0.0.1", self.upstream_port
            )
        upstream = self.upstream
        upstream.done, upstream.sse = False, SSEParser()
        assert upstream.transport is not None
        upstream.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: upstream\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        if not self.push:
            async for framed in _events(upstream, self.overrides):
                self.write(framed)
            self.write(LAST_CHUNK)


async def serve(port: int, upstream_port: int, push: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream_port, push), "127.0.0.1", port)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mode", choices=("push", "pull"), default="push")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args()
    install_uvloop()
    asyncio.run(serve(args.port, args.upstream_port, args.mode == "push"))


if __name__ == "__main__":
    main()
