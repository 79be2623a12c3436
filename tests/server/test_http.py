"""An SSE response that stops, and closes its source, when the client leaves
(``server/http.py``), under our protocol's extension and under any ASGI server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest
from starlette.requests import Request

from switchyard.errors import ClientGoneError
from switchyard.server.http import EventStream, unless_client_leaves
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


class Watchable:
    """Our protocol's client-gone extension, driven by hand."""

    def __init__(self, gone: bool = False) -> None:
        self.gone = gone
        self.callback: Callable[[], None] | None = None

    def watch(self, callback: Callable[[], None] | None) -> None:
        if callback is not None and self.gone:
            callback()
        else:
            self.callback = callback

    def leave(self) -> None:
        self.gone = True
        if self.callback is not None:
            self.callback()

    def request(self) -> Request:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "extensions": {CLIENT_GONE: {"watch": self.watch}}}
        return Request(scope, receive)


async def test_work_for_a_client_that_already_left_is_not_started() -> None:
    started = False

    async def work() -> int:
        nonlocal started
        started = True
        return 1

    with pytest.raises(ClientGoneError):
        await unless_client_leaves(Watchable(gone=True).request(), work())
    assert not started
    await asyncio.sleep(0)  # and no cancellation is left pending for this task


async def test_work_is_cancelled_when_the_client_leaves_and_only_then() -> None:
    client = Watchable()
    task = asyncio.create_task(unless_client_leaves(client.request(), asyncio.sleep(10)))
    await asyncio.sleep(0)
    client.leave()
    with pytest.raises(ClientGoneError):
        await task
    # A cancellation from elsewhere (a shutdown) at the same time stays one.
    client = Watchable()
    task = asyncio.create_task(unless_client_leaves(client.request(), asyncio.sleep(10)))
    await asyncio.sleep(0)
    client.leave()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
