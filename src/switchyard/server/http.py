"""Reading request bodies and writing JSON and SSE responses, once, fast."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from switchyard.errors import ClientGoneError, InvalidRequestError, PayloadTooLargeError
from switchyard.server.protocol import CLIENT_GONE

T = TypeVar("T")
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 past ``limit`` bytes, 400 if it is not JSON."""
    return parse_json(await read_body(request, limit), request)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, not empty; 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # uvicorn's receive() straight away: Request.stream() wraps it in an async generator
    # and state checks that cost more than reading the usual single message.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Nobody is left to answer; an ordinary error keeps it out of the error log.
            raise ClientGoneError("The client disconnected while sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if raw.startswith(_BOM):
        raw = raw[3:]  # JSON parsers may ignore one (RFC 8259); orjson refuses it
    if not raw:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    return raw


class CompressedBodyError(InvalidRequestError):
    status = 415  # RFC 9110: a content coding the server does not take


def parse_json(raw: bytes, request: Request | None = None) -> Any:
    """The parsed body; 400 if it is not JSON, 415 if it is compressed. The headers are
    read only when the body does not parse: the usual request never looks at them."""
    return parse_json_bytes(raw, request)[1]


def parse_json_bytes(raw: bytes, request: Request | None = None) -> tuple[bytes, Any]:
    """:func:`parse_json`, with the body's bytes as they can be kept: ``raw`` itself,
    unless a string in it held half a surrogate pair (a client that cut a text inside
    an emoji), which is replaced by U+FFFD, as in the parsed body."""
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        if "surrogate" in err.msg and "UTF-8" not in err.msg:
            # Escaped (\ud83d) and alone: JSON allows it, orjson neither reads nor
            # writes it. The rest of the text is kept; only the half character goes.
            # Anything else orjson would not take (NaN, integers past 64 bits, nesting
            # too deep to write) gets the error below, as without the half character.
            with contextlib.suppress(ValueError, TypeError, RecursionError):
                body = _whole_characters(json.loads(raw, parse_constant=_no_constant))
                return orjson.dumps(body), body
        coding = _content_coding(raw, request)
        if coding is not None:
            raise CompressedBodyError(
                f"The request body is compressed ({coding}); send the JSON uncompressed, "
                "without Content-Encoding."
            ) from None
        if "UTF-8" in err.msg:
            # orjson's own words ("surrogates not allowed") mislead for Latin-1 or UTF-16.
            raise InvalidRequestError(
                "The request body is not UTF-8; send JSON encoded as UTF-8."
            ) from None
        raise InvalidRequestError(
            f"The request body is not valid JSON ({err}). Send a JSON object with "
            "Content-Type: application/json."
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _whole_characters(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_whole_characters(item) for item in value]
    if isinstance(value, dict):
        return {_whole_characters(k): _whole_characters(v) for k, v in value.items()}
    return value


def _content_coding(raw: bytes, request: Request | None) -> str | None:
    """The compression a body that is not JSON was sent with, if any: gzip by its magic
    bytes (curl --compressed, some proxies send it unannounced), any other by its
    Content-Encoding header (deflate, br, zstd)."""
    if raw.startswith(_GZIP):
        return "gzip"
    coding = request.headers.get("content-encoding", "") if request is not None else ""
    coding = coding.strip().lower()
    return coding if coding and coding != "identity" else None


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than {limit} bytes; send less, "
        "or raise server.max_body_bytes in the config."
    )


def json_response(payload: Any, status: int = 200) -> Response:
    return bytes_response(orjson.dumps(payload), status)


def bytes_response(content: bytes, status: int = 200) -> Response:
    """A JSON response from bytes already serialised."""
    return Response(content, status_code=status, media_type="application/json")


class EventStream(Response):
    """A Server-Sent Events response over ``events``, sent as they come.

    Cheaper than Starlette's StreamingResponse, which starts an anyio task group per
    stream and hands a bound ``aclose`` to a BackgroundTask that runs it in a thread:
    here the server's protocol says when the client leaves (or, under another server,
    one plain task waiting on ``receive()``). If the client leaves, the stream is
    cancelled where it waits, and closing ``events`` closes the provider's stream too.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = asyncio.current_task()
        assert stream is not None
        watch = _DisconnectWatch(stream, scope, receive)
        try:
            if not watch.client_left:  # gone already: nothing is sent
                await self._send_events(send)
        except asyncio.CancelledError:
            # Ours (the client left) is done with; one from elsewhere (a shutdown) goes on.
            if not watch.client_left or stream.uncancel() > 0:
                raise
        finally:
            watch.stop()
            await self.events.aclose()

    async def _send_events(self, send: Send) -> None:
        # The head goes out now, not with the first event: a model that thinks for
        # minutes must not leave a proxy waiting for headers. When the first event is
        # already in (the usual case), it is relayed in this same loop iteration and
        # the transport sends both together.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result; cancelled, and a :class:`ClientGoneError`, when the client
    disconnects first: nobody would read the answer of a provider's generation or of
    the inline model's batches, and the client's SDK may already be sending it again."""
    task = asyncio.current_task()
    assert task is not None
    watch = _DisconnectWatch(task, request.scope, request.receive)
    try:
        if not watch.client_left:
            return await work
        work.close()  # gone before it began
    except asyncio.CancelledError:
        # Ours (the client left) becomes the error below; one from elsewhere goes on.
        if not watch.client_left or task.uncancel() > 0:
            raise
    finally:
        watch.stop()
    raise ClientGoneError("The client disconnected before the answer.")


class _DisconnectWatch:
    """Cancels ``stream`` when the client disconnects, until :meth:`stop`."""

    __slots__ = ("_stream", "_task", "_watch_client", "client_left")

    def __init__(self, stream: asyncio.Task[Any], scope: Scope, receive: Receive) -> None:
        self.client_left = False
        # Armed once registered: a client gone already is only noted (``client_left``),
        # not a cancellation of the running task, which would land at any later await.
        self._stream: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        gone = (scope.get("extensions") or {}).get(CLIENT_GONE)
        self._watch_client = None if gone is None else gone["watch"]
        if self._watch_client is not None:
            self._watch_client(self._client_gone)  # at once if it has left already
        else:
            self._task = asyncio.get_running_loop().create_task(self._watch(receive))
        if not self.client_left:
            self._stream = stream

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_gone()

    def _client_gone(self) -> None:
        self.client_left = True
        if self._stream is not None:
            self._stream.cancel()

    def stop(self) -> None:
        self._stream = None  # from here on a disconnect cancels nothing
        if self._watch_client is not None:
            self._watch_client(None)
        if self._task is not None:
            self._task.cancel()
