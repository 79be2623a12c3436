"""uvicorn's httptools protocol, with each response's writes sent as fewer TCP segments.

uvicorn writes a response's status line and headers with one ``transport.write`` and
its body with another, and a stream's events one write each. Every write is a syscall
and, with TCP_NODELAY, a segment that can wake the client. py-spy put those writes at
18% of a worker's samples for streams that arrive from the provider in one read
(bench/NOTES.md, section 6). This transport:

- keeps a response head back until the next write (the body, or a stream's first
  event) and sends the two together;
- gathers the writes that follow within the same event-loop iteration (a burst of
  stream events parsed from one read) and sends them as one at the end of it.

Nothing ever waits for more data: whatever is held is written before the event loop
next polls for I/O, so an event that arrives alone is forwarded at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "switchyard.server.protocol:HttpProtocol"  # for uvicorn's --http
_HEAD = b"HTTP/"  # how every response head uvicorn writes begins


class GatheringTransport:
    """Wraps a transport; everything but ``write``, ``close`` and ``abort`` passes through."""

    __slots__ = ("_busy", "_head", "_held", "_loop", "_ticking", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._head = False  # what is held is a response head alone
        self._busy = False  # something was written in this loop iteration
        self._ticking = False  # an end-of-iteration callback is scheduled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head:  # the head and its first body piece go out together, now
            self._held.append(bytes(data))
            self._send_held()
            self._busy = True
        elif self._held:
            self._held.append(bytes(data))
        elif self._busy or data[:5] == _HEAD:
            self._held.append(bytes(data))
            self._head = not self._busy
        else:
            self._transport.write(data)
            self._busy = True
        self._tick_soon()

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._head = False
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _tick_soon(self) -> None:
        if not self._ticking:
            self._ticking = True
            self._loop.call_soon(self._end_of_iteration)

    def _end_of_iteration(self) -> None:
        self._ticking = False
        self._busy = False
        self._send_held()

    def _send_held(self) -> None:
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._head = False
        if not self._transport.is_closing():  # the client may have left meanwhile
            self._transport.write(data)


class HttpProtocol(HttpToolsProtocol):
    """``uvicorn --http switchyard.server.protocol:HttpProtocol``: the CLI's choice."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        super().connection_made(cast(asyncio.Transport, GatheringTransport(transport, loop)))
