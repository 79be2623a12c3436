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

Nothing ever waits for more data: whatever is held is written by a callback at the
start of the event loop's next iteration, so an event that arrives alone is forwarded
at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from switchyard.errors import InvalidRequestError
from switchyard.server import request_id

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGISendEvent

HTTP_PROTOCOL = "switchyard.server.protocol:HttpProtocol"  # for uvicorn's --http
# How long an idle client connection stays open (uvicorn's default is 5 s). Longer than
# the clients' own idle expiry (httpx, under the openai SDK: 5 s; aiohttp: 15 s), so that
# the client closes an idle connection, never the server just as the client reuses it:
# that race fails a request with "Server disconnected without sending a response". 75 s
# is nginx's default.
KEEP_ALIVE_SECONDS = 75
# How long a client may take to send a request once it connects, or may leave one half
# sent without sending more (nginx's client_header_timeout and client_body_timeout):
# past it the connection is closed, or connections that never finish a request (slow
# loris) would hold file descriptors for ever.
REQUEST_STALL_SECONDS = 60.0
# How long a client may leave what was sent to it unread, the socket's buffers full,
# before the connection is dropped (nginx's send_timeout): a stream whose client stopped
# reading would otherwise hold its provider's stream and connection for ever.
SEND_STALL_SECONDS = 60.0
# The most a request's line and headers may take (OpenAI asks clients to keep headers
# under 64 KiB); past it a 431. Without a bound, one 100 MB header took 12 s of a core
# (httptools joins a header's pieces as they come) and the memory it came in.
MAX_HEAD_BYTES = 64 * 1024
_HEAD = b"HTTP/"  # how every response head uvicorn writes begins
# An ASGI extension of ours: ``scope["extensions"][CLIENT_GONE]["watch"](callback)``
# calls ``callback`` when the client's connection is lost (at once if it already is),
# until ``watch(None)``. A stream learns of a client leaving from the protocol itself,
# instead of from a task of its own waiting on ``receive()``: that task cost ~35 us of
# CPU per stream, a tenth of the streams at saturation (bench/NOTES.md, section 30).
CLIENT_GONE = "switchyard.client_gone"


class GatheringTransport(asyncio.Transport):
    """Wraps a transport: writes are gathered (see the module's docstring), the rest
    passes straight through.

    Every method is spelled out rather than forwarded by ``__getattr__``: a class with
    one gets none of the interpreter's specialised attribute look-ups (each of its own
    ``self._x`` reads went through the hook), and a method found only by it first fails
    the normal look-up, raising and clearing an AttributeError (~2k instructions; uvicorn
    asks ``is_closing`` once a request). bench/NOTES.md, section 55."""

    __slots__ = ("_busy", "_head", "_held", "_loop", "_ticking", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._head = False  # what is held is a response head alone
        self._busy = False  # something was written in this loop iteration
        self._ticking = False  # an end-of-iteration callback is scheduled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head:  # the head and its first body piece go out together, now
            self._held.append(bytes(data))
            self.flush()
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

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._head = False
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def _tick_soon(self) -> None:
        if not self._ticking:
            self._ticking = True
            self._loop.call_soon(self._end_of_iteration)

    def _end_of_iteration(self) -> None:
        self._ticking = False
        self._busy = False
        self.flush()

    def flush(self) -> None:
        """Write what is held now (at the end of an iteration, when a response is
        complete, or before the transport is closed)."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._head = False
        if not self._transport.is_closing():  # the client may have left meanwhile
            self._transport.write(data)


class UnframedCycle(RequestResponseCycle):
    """The response cycle of an HTTP/1.0 request. HTTP/1.0 has no chunked encoding, and a
    server must not send it to a 1.0 client (RFC 9112, section 6.1), but uvicorn frames
    every response of unknown length (every stream) in chunks: a 1.0 client (``curl
    --http1.0``, a proxy or health check speaking 1.0) read the chunk sizes as part of
    the body. Here such a response goes out as it comes and ends when the connection
    closes, as a 1.0 body of unknown length does (uvicorn closes every 1.0 connection
    after its response)."""

    _unframed = False

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            framed = any(
                name.lower() in (b"content-length", b"transfer-encoding")
                for name, _ in message.get("headers", ())
            )
            if not framed and self.scope["method"] != "HEAD":
                self._unframed = True
                self.chunked_encoding = False  # so uvicorn adds no transfer-encoding
        elif self._unframed and message["type"] == "http.response.body":
            # uvicorn counts a body it does not chunk against a Content-Length: each
            # piece is the whole of what is expected of it.
            self.expected_content_length = len(message.get("body", b""))
        await super().send(message)


async def _refuse_upgrade(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request that offers to switch protocols (see
    ``HttpProtocol._unsupported_upgrade_warning``)."""
    body = InvalidRequestError(
        "Switchyard speaks HTTP/1.1 and does not switch protocols (the request's Upgrade "
        "header offers one: h2c, WebSocket); send it without Upgrade (curl: without "
        "--http2)."
    ).to_json()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (request_id.HEADER, request_id.assign(scope)),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpProtocol(HttpToolsProtocol):
    """``uvicorn --http switchyard.server.protocol:HttpProtocol``: the CLI's choice."""

    _on_client_gone: Callable[[], None] | None = None
    _client_lost = False
    # The stall timer (REQUEST_STALL_SECONDS), armed only while the connection owes a
    # request: none yet since it connected, or one begun and not complete after a read.
    # A request that arrives whole in one read (nearly all) never arms it.
    _stall: asyncio.TimerHandle | None = None
    _unread: asyncio.TimerHandle | None = None  # SEND_STALL_SECONDS, while writing is paused
    _unread_bytes = 0  # what waited to be read when that period began
    _begun = False  # a request has begun on this connection
    _in_request = False  # one has begun and is not complete
    _in_head = False  # and its line and headers are not complete yet
    _upgraded = False  # a request offering another protocol came: nothing more is read
    _head_bytes = 0  # read while in them (a read that began in them counts whole)
    _last_read = 0.0
    _since = 0.0  # when the stall timer was armed: the head's deadline counts from it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        self._gathering = GatheringTransport(transport, loop)
        super().connection_made(self._gathering)
        self._arm_stall()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            return  # what follows a request refused for its Upgrade is not a request
        if self._stall is not None:
            self._last_read = self.loop.time()
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # an answer is being written: no refusal inside it
                return
            self._refuse(
                f"The request's line and headers are over {MAX_HEAD_BYTES // 1024} KiB; "
                "send shorter ones (a long query or a large cookie?).",
                b"431 Request Header Fields Too Large",
            )
            return
        if self._in_request and self._stall is None:
            self._arm_stall()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._begun and self._stall is not None:
            self._stall.cancel()  # the first request came; re-armed if it stalls
            self._stall = None
        self._in_request = self._begun = self._in_head = True
        self._head_bytes = 0
        if self._stall is not None:
            self._since = self._last_read  # a timer an earlier request armed: its head
        self.scope["extensions"] = {CLIENT_GONE: {"watch": self._watch_client}}

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        cycle = self.cycle
        if self.scope["http_version"] == "1.0" and cycle is not None and cycle.scope is self.scope:
            # Its ASGI task has not run yet, so it sends with this class's send.
            cycle.__class__ = UnframedCycle

    def on_message_complete(self) -> None:
        self._in_request = False
        super().on_message_complete()

    def _arm_stall(self) -> None:
        self._last_read = self._since = self.loop.time()
        self._stall = self.loop.call_later(REQUEST_STALL_SECONDS, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        if self._begun and not self._in_request:
            return  # requests came whole: the keep-alive timeout watches it from here
        if self.pipeline:
            # A request queued behind a response still running: uvicorn stopped reading
            # until that response ends, so the silence is ours, not the client's.
            self._arm_stall()
            return
        # A body may be slow as long as it keeps coming (a large upload on a slow
        # link); a request's head has REQUEST_STALL_SECONDS in all, as nginx's
        # client_header_timeout: one byte every few seconds (slow loris) is not a client.
        head = not self._begun or self._in_head
        left = (self._since if head else self._last_read) + REQUEST_STALL_SECONDS - self.loop.time()
        if left > 0:
            self._stall = self.loop.call_later(left, self._check_stall)
        elif not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers a request it cannot parse (a bad chunk size, a
        Content-Length that is not a number): OpenAI's error JSON, not plain text."""
        self._refuse(
            "The HTTP request could not be parsed (its request line, a header, or its "
            "chunked body is malformed); send a well-formed HTTP/1.1 request."
        )

    def _should_upgrade(self) -> bool:
        return False  # no WebSocket route: every Upgrade is refused below, whatever ws=

    def _unsupported_upgrade_warning(self) -> None:
        """A request offering another protocol (``Upgrade: h2c``, as ``curl --http2``
        sends over http://; a WebSocket): httptools skipped its body, and would read
        whatever came next (that body) as the next request. So its handler does not run
        (it would have found no body; a DELETE needs none), it is answered a 400 in its
        turn, after any answer still being written, and the connection then closes;
        nothing more is read from it."""
        self._upgraded = True
        cycle = self.cycle
        if cycle is None:
            return
        cycle.keep_alive = False
        for i, (queued, _) in enumerate(self.pipeline):
            if queued is cycle:  # queued behind an answer still being written
                self.pipeline[i] = (cycle, cast("ASGI3Application", _refuse_upgrade))
                return
        for task in self.tasks:
            # Its task is made but has not run a step: cancelled, its handler never runs.
            frame = getattr(task.get_coro(), "cr_frame", None)
            if frame is not None and frame.f_locals.get("self") is cycle:
                task.cancel()
        self._start_asgi_task(cycle, cast("ASGI3Application", _refuse_upgrade))

    def _refuse(self, message: str, status: bytes = b"400 Bad Request") -> None:
        error = InvalidRequestError(message)
        body = error.to_json()
        head = [b"HTTP/1.1 " + status + b"\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\n%s: %s\r\n"
            b"connection: close\r\n\r\n" % (len(body), request_id.HEADER, request_id.new_id())
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._unread is None:
            self._watch_unread()

    def resume_writing(self) -> None:
        if self._unread is not None:
            self._unread.cancel()
            self._unread = None
        super().resume_writing()

    def _watch_unread(self) -> None:
        self._unread_bytes = self.transport.get_write_buffer_size()
        self._unread = self.loop.call_later(SEND_STALL_SECONDS, self._check_unread)

    def _check_unread(self) -> None:
        # As nginx's send_timeout: the time since the client last read, not the time
        # to send a large answer (one write of a whole body pauses until nearly all of
        # it is read). Closing too (a last answer waits in the buffer): what is buffered
        # will never be read, so it is dropped, not flushed. connection_lost cancels this.
        if self.transport.get_write_buffer_size() < self._unread_bytes:
            self._watch_unread()  # it read some since: a new period
            return
        self._unread = None
        self.transport.abort()

    def _watch_client(self, callback: Callable[[], None] | None) -> None:
        if callback is None:
            self._on_client_gone = None
        elif self._client_lost:  # it left while the provider was still to answer
            callback()
        else:
            self._on_client_gone = callback
            # uvicorn pauses reading when a large body arrives in one piece, and only a
            # call to receive() resumes it; paused, the socket's end goes unnoticed.
            self.flow.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_lost = True
        for timer in (self._stall, self._unread):
            if timer is not None:
                timer.cancel()
        self._stall = self._unread = None
        gone, self._on_client_gone = self._on_client_gone, None
        super().connection_lost(exc)
        if gone is not None:
            gone()

    def on_response_complete(self) -> None:
        # The end of a stream (its last event, the chunked terminator) goes out now:
        # the handler's cleanup after it (closing the provider's response) must not
        # delay the client's last byte (bench/NOTES.md, section 8).
        self._gathering.flush()
        super().on_response_complete()
