"""An SSE response that stops, and closes its source, when the client leaves
(``server/http.py``), under our protocol's extension and under any ASGI server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from switchyard.server.http import EventStream
from switchyard.server.protocol import CLIENT_GONE


class Source:
    """One event, then a wait for the next that never comes (a model thinking)."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def events(self) -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            await asyncio.Event().wait()
            yield b"data: never\n\n"
        finally:
            self.closed.set()


class Client:
    """The ASGI side of a client: records what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.first_event = asyncio.Event()
        self.gone = asyncio.Event()  # set: receive() says the client disconnected

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message.get("body"):
            self.first_event.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def _serve(scope: dict[str, Any], client: Client, source: Source) -> asyncio.Task[None]:
    response = EventStream(source.events())
    task = asyncio.create_task(response(scope, client.receive, client.send))  # type: ignore[arg-type]
    await asyncio.wait_for(client.first_event.wait(), 5)
    return task


async def test_under_any_server_a_disconnect_from_receive_ends_the_stream() -> None:
    client, source = Client(), Source()
    task = await _serve({"type": "http"}, client, source)
    client.gone.set()
    await asyncio.wait_for(task, 5)  # ends normally: the client's leaving is no error
    assert source.closed.is_set()
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


async def test_under_our_protocol_the_protocols_callback_ends_the_stream() -> None:
    watching: list[Callable[[], None] | None] = []
    scope = {"type": "http", "extensions": {CLIENT_GONE: {"watch": watching.append}}}
    client, source = Client(), Source()
    task = await _serve(scope, client, source)
    gone = watching[0]
    assert gone is not None
    gone()  # what HttpProtocol.connection_lost calls
    await asyncio.wait_for(task, 5)
    assert source.closed.is_set()
    assert watching[-1] is None  # the stream stopped watching when it ended


async def test_a_stream_that_ends_stops_watching_and_a_late_disconnect_cancels_nothing() -> None:
    watching: list[Callable[[], None] | None] = []
    scope = {"type": "http", "extensions": {CLIENT_GONE: {"watch": watching.append}}}

    async def two() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    client = Client()
    await EventStream(two())(scope, client.receive, client.send)  # type: ignore[arg-type]
    assert watching[-1] is None
    gone = watching[0]
    assert gone is not None
    gone()  # a callback that fires late must not cancel whatever the task runs next
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
