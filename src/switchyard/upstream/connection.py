"""One keep-alive HTTP/1.1 connection to a provider, as an asyncio protocol.

httptools (llhttp, the parser Node.js and uvicorn use) does the parsing; this module
only frames a request, collects the answer and hands the body on as it arrives. It
exists because a proxied request is mostly client work: aiohttp spent ~250 us of CPU
per call here against ~30 us for this (`bench/NOTES.md`, section 9), and at a low
request rate that difference is most of the latency a gateway adds.

A connection serves one request at a time. The read timeout is an inactivity timeout,
armed only while somebody waits for bytes: a slow consumer never times out a
provider, and a provider silent for longer than the timeout always does.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import cast

import httptools

from switchyard.upstream.base import BadAnswer, ends_at_close

# A request whose connection is closed sooner than this after it was sent, with no byte
# of an answer, met a connection the provider had already dropped (see ConnectionLostError).
RESEND_WINDOW = 0.5
# Flow control for streamed bodies: stop reading from the provider while this much is
# buffered and not yet taken; the next read takes all of it and reading starts again.
HIGH_WATER = 256 * 1024
# The most a whole (not streamed) answer may hold, read or decompressed: far above any
# real one (2,048 embeddings of 3,072 floats are ~130 MB of JSON), low enough that a
# broken or hostile provider cannot take a worker's memory. Above HIGH_WATER: on_body
# looks for it only past that mark.
MAX_WHOLE_BODY = 512 * 1024 * 1024
# How much an answer's head may take to arrive, as in nginx and aiohttp's order of
# size: real providers send a few KB; a broken one could send without end.
MAX_HEAD = 64 * 1024


# What the kernel ends a connection with when its peer or the route to it is gone.
_PATH_FAILED = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)


class ConnectionLostError(ConnectionError):
    """The provider closed the connection. ``resendable``: it did so at once, before any
    byte of an answer: an idle connection the provider had already dropped, which never
    saw the request, so it can be sent again on a new connection. A connection dropped
    later (a proxy's timeout while the model works) may have been acted on: never resent,
    or the provider would generate and bill twice."""

    def __init__(self, message: str, *, resendable: bool) -> None:
        super().__init__(message)
        self.resendable = resendable


class Http1Connection(asyncio.Protocol):
    """The socket side. :meth:`request` sends, then :meth:`read_all` or :meth:`next_chunk`
    take the body; :attr:`reusable` says whether it can serve another request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        # What h11 (under the openai SDK) and aiohttp read from a provider, llhttp's
        # strict defaults refuse: bare LF line ends, a space after a chunk's size, a
        # length beside chunked framing (the chunks frame the body, RFC 9112, 6.3; the
        # connection is then not reused: on_message_complete). Such an answer must not
        # be a 502 only through Switchyard. Not lenient_headers: besides folded headers
        # it takes "Content-Length : 3" and NULs in values, which h11 refuses.
        self._parser.set_dangerous_leniencies(
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
            lenient_chunked_length=True,
        )
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # Set by the pool while the connection waits in it, so that a connection the
        # provider closes leaves the pool at once.
        self.on_idle_close: Callable[[Http1Connection], None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the read timeout, see _wait
        self._deadline = 0.0
        self._reset()

    def _reset(self) -> None:
        self.reusable = False  # until this answer ends and the provider keeps the connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self._head_size = 0
        self._repeats: dict[str, list[str]] = {}
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._answered = False  # any byte of the answer seen
        self._sent_at = 0.0
        self._head_done = False
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._whole = False  # the body is wanted in one piece: no flow control
        self._drain: _Drain | None = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as err:
            self._fail(BadAnswer(f"a malformed HTTP answer: {err}"))
            return
        if not self._head_done:
            # Reads that leave the head unfinished: counted per read, since httptools
            # grows one endless header's value without calling back at all.
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(BadAnswer(f"an answer whose headers exceed {MAX_HEAD // 1024} KiB"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._stop_timer()
        if self._drain is not None:
            self._drain.timer.cancel()
        if self.on_idle_close is not None:
            self.on_idle_close(self)
        if self._complete or self._error is not None:
            return
        if isinstance(exc, OSError) and exc.errno in _PATH_FAILED:
            # Not the provider closing: the kernel gave up on the path to it
            # (pool._detect_dead_peer's probes), a timeout or the route's own error.
            self._fail(exc)
            return
        if self._head_done and exc is None and ends_at_close(self.headers):
            self._complete = True  # a body delimited by the end of the connection
            self._wake()
            return
        at_once = self._loop.time() - self._sent_at < RESEND_WINDOW
        message = "the provider closed the connection"
        if not self._head_done:
            message += " before answering"
        self._fail(ConnectionLostError(message, resendable=at_once and not self._answered))

    # -- httptools callbacks --------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:  # a chunked body's trailers: nobody reads them, only counted
            self._head_size += len(name) + len(value)
            if self._head_size > MAX_HEAD:
                self._fail(BadAnswer(f"trailers larger than {MAX_HEAD // 1024} KiB"))
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key not in self.headers:
            self.headers[key] = text
        else:  # joined once the head is in: joined per repeat, n repeats cost n squared
            self._repeats.setdefault(key, [self.headers[key]]).append(text)

    def on_headers_complete(self) -> None:
        if self._repeats:
            for key, values in self._repeats.items():
                self.headers[key] = ", ".join(values)
            self._repeats = {}
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            self.headers = {}
            return
        self.status = status
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        # Called for each piece of the body (each event of a stream, as providers
        # chunk them): below HIGH_WATER a piece takes one size test and wakes the
        # reader in this frame, without a call (bench/NOTES.md, section 53).
        if self._drain is not None:
            self._drain.left -= len(body)
            if self._drain.left < 0:
                self.close()
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and self._past_high_water():
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _past_high_water(self) -> bool:
        """Fails a body wanted whole that is past MAX_WHOLE_BODY (True), or pauses
        reading a stream until its reader catches up."""
        if self._whole:
            if self._buffered > MAX_WHOLE_BODY:
                self._fail(too_large())
                return True
        elif not self._paused:
            self._paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        return False

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an informational answer
        self._complete = True
        closing = self._transport is None or self._transport.is_closing()
        # Framed by its chunks despite a length: whoever framed it by the length (a proxy
        # on the way) disagrees on where the next answer starts.
        framed_twice = "content-length" in self.headers and "transfer-encoding" in self.headers
        self.reusable = self._parser.should_keep_alive() and not closing and not framed_twice
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.timer.cancel()
            drain.then(self)

    # -- the request ------------------------------------------------------------------

    async def request(self, data: bytes) -> None:
        """Send a whole request and wait for the answer's status line and headers."""
        assert self._transport is not None
        self.resume_reading()  # the last answer may have been left with its tail unread
        self._reset()
        self._sent_at = self._loop.time()
        self._transport.write(data)
        while not self._head_done:
            await self._wait()

    async def read_all(self) -> bytes:
        self._whole = True
        self.resume_reading()
        while not self._complete:
            await self._wait()
        if self._buffered > MAX_WHOLE_BODY:  # all in before it was asked for
            self.close()
            raise too_large()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def next_chunk(self) -> bytes | None:
        """The body's bytes that arrived since the last call (waiting for some if none
        did), or None at its end. Pieces that are already here go out as one: a
        provider frames each stream event as a chunk of its own, and a burst of them
        then crosses the relay's layers once, not once per event."""
        chunks = self._chunks
        while not chunks:
            if self._complete:
                return None
            await self._wait()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self.resume_reading()
        return data

    def resume_reading(self) -> None:
        """Read from the socket again if flow control had paused it."""
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def drain(self, then: Callable[[Http1Connection], None], limit: int, seconds: float) -> None:
        """Read what is left of an answer nobody wants any more, in the background, and
        hand the connection to ``then`` when it ends; close it instead if more than
        ``limit`` bytes or ``seconds`` go by first. A stream's consumer stops at
        ``[DONE]``, usually just before the provider's end of the body: closing the
        connection there would cost a new connection for every stream."""
        self._chunks.clear()
        self._buffered = 0
        self._drain = _Drain(then, limit, self._loop.call_later(seconds, self.close))
        self.resume_reading()

    @property
    def complete(self) -> bool:
        return self._complete

    def close(self) -> None:
        self.reusable = False
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- waiting --------------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        # One timer per connection, moved lazily: a wait only pushes the deadline on,
        # and the timer, when it fires early, re-arms itself for the new deadline. A
        # timer started and cancelled per wait cost ~2.6 us warm for every event a
        # stream relays (bench/NOTES.md, section 28).
        self._deadline = self._loop.time() + self._read_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _check_deadline(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # nobody waits (or bytes came): a slow consumer never times out a provider
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        self._time_out()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _time_out(self) -> None:
        self._fail(TimeoutError(f"no data from the provider for {self._read_timeout:g} s"))

    def _fail(self, err: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = err
        self.close()
        self._wake()


def too_large(what: str = "") -> BadAnswer:
    """The failure of an answer past MAX_WHOLE_BODY (``what``: how it was measured)."""
    return BadAnswer(f"an answer larger than {MAX_WHOLE_BODY / 2**20:g} MiB{what}")


class _Drain:
    __slots__ = ("left", "then", "timer")

    def __init__(
        self, then: Callable[[Http1Connection], None], left: int, timer: asyncio.TimerHandle
    ) -> None:
        self.then = then
        self.left = left
        self.timer = timer
