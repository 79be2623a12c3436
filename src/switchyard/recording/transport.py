"""The recorder: a wrapper transport around the live one, as httpx wraps transports.

:class:`RecordingTransport` sits on the upstream seam of one provider. Per mode:

``record``
    send through the live transport and write every interaction (the first write of a
    server run starts the cassette afresh);
``replay``
    answer from the cassettes; there is no live transport at all, so no socket is ever
    opened, and a request without a recording raises :class:`ReplayMissError`;
``record-if-missing``
    replay what is recorded, send and record the rest.

Recording holds back only a stream's end: chunks go to the client as they arrive, while
a parser beside them collects the events and their timing, and the piece with
``data: [DONE]`` is passed on once the interaction is written (a client that has its
answer finds it in the cassette). The recorder reads an answer in a task of its own, so a
client that leaves or stops early does not cut it: it is read to its end and written
whole. One the provider cuts is not written (it would replay truncated). Error answers
are recorded like any other and replay as errors, with the provider's configured
secrets hidden in their text (a provider may echo the key it refused). A cassette that
cannot be written costs the log an error, not the client its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson

from switchyard.errors import ConfigError
from switchyard.hidden import hide_json
from switchyard.recording import scrub
from switchyard.recording.cassette import (
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamEvent,
    now_iso,
)
from switchyard.recording.library import CassetteLibrary
from switchyard.recording.llama_stack import normalise_path
from switchyard.recording.matching import sorted_json
from switchyard.recording.sse import DONE, MAX_EVENT_BYTES, SSEParser, encode_event
from switchyard.upstream import Transport, UpstreamRequest, UpstreamResponse
from switchyard.upstream.retry import RETRY_SENT

log = logging.getLogger(__name__)

__all__ = ["RecordingTransport", "ReplayedResponse", "finish_reads", "recorded_request"]

MODES = ("record", "replay", "record-if-missing")
_CONTENT_TYPES = {"events": "text/event-stream", "body": "application/json", "text": "text/plain"}


def recorded_request(request: UpstreamRequest) -> RecordedRequest:
    """The request as a cassette keeps it: path without host or base-URL prefix, query
    and headers without secrets, body as sorted JSON."""
    parts = urlsplit(request.url)
    body = request.json
    if body is None and request.content:
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            body = request.content.decode("utf-8", "replace")
    return RecordedRequest(
        method=request.method.upper(),
        path=normalise_path(parts.path),
        body=sorted_json(body),
        query=scrub.request_query(parts.query),
        headers=scrub.request_headers(request.headers),
    )


class RecordingTransport:
    """Record, replay, or both, around ``inner`` (``None`` in replay: no network)."""

    def __init__(
        self,
        provider_id: str,
        library: CassetteLibrary,
        mode: str,
        inner: Transport | None = None,
        *,
        realtime: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown record mode '{mode}'; use one of {', '.join(MODES)}")
        if inner is None and mode != "replay":
            raise ConfigError(f"record mode '{mode}' needs the live transport to wrap")
        self.provider_id = provider_id
        self.library = library
        self.mode = mode
        self._inner = inner
        self._realtime = realtime
        self._secrets = secrets  # hidden in what is written (hidden.configured_secrets)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        recorded = recorded_request(request)
        inner = self._inner
        if self.mode != "record":
            can_record = self.mode == "record-if-missing"
            found = self.library.find(self.provider_id, recorded, can_record=can_record)
            if found is not None:
                return ReplayedResponse(found.response, realtime=self._realtime)
        if inner is None:
            # Finding the closest recording compares against all of them: off the loop.
            raise await asyncio.to_thread(self.library.miss, self.provider_id, recorded)
        # Sent in a task of the recorder's, as an answer is read: a client that leaves
        # before the provider answers (a timeout, a non-streamed answer that comes whole)
        # leaves it to be read to its end and written, not dropped unrecorded.
        sending = asyncio.get_running_loop().create_task(self._send(inner, request, recorded))
        _READS.add(sending)
        sending.add_done_callback(_forget)
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            sending.add_done_callback(partial(_read_unclaimed, streamed=request.stream))
            raise

    async def _send(
        self, inner: Transport, request: UpstreamRequest, recorded: RecordedRequest
    ) -> UpstreamResponse:
        started = time.monotonic()
        response = await inner.send(request)
        # A retry's, if the answer came from one (older ones are from earlier requests).
        started = max(started, RETRY_SENT.get())

        async def finish(answer: RecordedResponse) -> None:
            interaction = Interaction(
                self.provider_id,
                recorded,
                answer,
                recorded_at=now_iso(),
                test_id=self.library.test_id,
            )
            await self.library.record(interaction, replayable=self.mode == "record-if-missing")

        return _RecordingResponse(response, started, finish, self._secrets)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


# The recorder's parser holds an event not ended up to twice what the provider's does:
# the provider's refuses such a stream first, with its own message, and the recorder,
# reading on for the cassette after its client left, stops here (not recorded).
RECORDED_EVENT_BYTES = 2 * MAX_EVENT_BYTES


class _StreamCopy:
    """The events of a stream being recorded, with their timing; written once."""

    def __init__(
        self,
        started: float,
        write: Callable[[list[StreamEvent]], Awaitable[None]],
        hidden: Callable[[Any], Any],
    ) -> None:
        self._parser = SSEParser(RECORDED_EVENT_BYTES)
        self._hidden = hidden
        self._events: list[StreamEvent] = []
        self._last = started
        self._write = write
        self.written = False

    async def feed(self, chunk: bytes) -> None:
        now, done = time.monotonic(), False
        for data in self._parser.feed(chunk):
            self._events.append(self._event(data, (now - self._last) * 1000))
            self._last = now
            done = done or data == DONE
        # The consumer stops reading at [DONE] (even with more in the same piece: a
        # burst comes as one), so it is written before the piece is passed on.
        if done and not self.written:
            await self.end(flush=False)

    def _event(self, data: bytes, delay_ms: float = 0.0) -> StreamEvent:
        event = StreamEvent.from_raw(data, delay_ms)
        event.data = self._hidden(event.data)
        return event

    async def end(self, *, flush: bool = True) -> None:
        if self.written:
            return
        if flush:
            self._events += [self._event(data) for data in self._parser.flush()]
        self.written = True
        await self._write(self._events)


# The tasks reading recorded answers (kept, so that none is collected mid-answer).
_READS: set[asyncio.Task[Any]] = set()
# Pieces read ahead of a slow client, at most: beyond, the provider waits (TCP does).
_AHEAD = 64


def _forget(task: asyncio.Task[Any]) -> None:
    _READS.discard(task)
    if not task.cancelled():
        task.exception()  # the client's to see, if it still waits: not logged again here


def _read_unclaimed(sending: asyncio.Task[UpstreamResponse], *, streamed: bool) -> None:
    """An answer whose client left while it was being sent: read to its end, and so
    written, by a task the shutdown waits for too; as events only where a provider
    would read it so (an error, or one JSON document, is a body)."""
    if sending.cancelled() or sending.exception() is not None:
        return
    response = sending.result()
    events = (
        streamed
        and response.status < 400
        and not response.headers.get("content-type", "").startswith("application/json")
    )
    reading = _drain(response) if events else response.read()
    task = asyncio.get_running_loop().create_task(_closing(response, reading))
    _READS.add(task)
    task.add_done_callback(_forget)


async def _drain(response: UpstreamResponse) -> None:
    async for _ in response.aiter_bytes():
        pass


async def _closing(response: UpstreamResponse, reading: Awaitable[Any]) -> None:
    try:
        await reading
    finally:
        await response.aclose()


async def finish_reads(within: float) -> None:
    """Let the answers still being read for a cassette end (a server shutting down);
    past ``within`` seconds, cut them: they are not recorded, and the log says so."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # Again until none is left: an answer sent while its client left is read by a task
    # that starts only once the sending one ends.
    while reads := {t for t in _READS if t.get_loop() is loop and not t.done()}:
        left = deadline - loop.time()
        if left > 0:
            await asyncio.wait(reads, timeout=left)
            continue
        log.warning("recording: %d answers still going at shutdown are not recorded", len(reads))
        for task in reads:
            task.cancel()
        await asyncio.wait(reads, timeout=1.0)
        return


class _RecordingResponse:
    """Passes the live answer through unchanged and hands a copy to ``finish``."""

    def __init__(
        self,
        inner: UpstreamResponse,
        started: float,
        finish: Callable[[RecordedResponse], Awaitable[None]],
        secrets: tuple[str, ...],
    ) -> None:
        self._inner = inner
        self._started = started
        self._finish = finish
        self._secrets = secrets
        self._refused = inner.status >= 400
        self._reading = False  # a task of ours reads the stream, and closes it
        self._detached = False  # its client has stopped reading
        self.status = inner.status
        self.headers: Mapping[str, str] = inner.headers
        self.ends_at_close = inner.ends_at_close

    def _hidden(self, value: Any) -> Any:
        """``value`` without the secrets if it reports an error. A provider echoes a key
        in refusing it, with an error status or in an error object sent with 200 (in a
        stream, mid-way); a success is kept as it came (a short key such as "ollama" is
        also in Ollama's system_fingerprint)."""
        if self._secrets and (self._refused or _reports_error(value)):
            return hide_json(value, self._secrets)
        return value

    def _answer(self, **content: Any) -> RecordedResponse:
        return RecordedResponse(self.status, scrub.response_headers(self.headers), **content)

    async def _write_events(self, events: list[StreamEvent]) -> None:
        await self._finish(self._answer(events=events))

    async def read(self) -> bytes:
        # In a task of the recorder's, as a stream is: a client that leaves while the
        # provider answers does not leave the answer unrecorded.
        task = asyncio.get_running_loop().create_task(self._read_and_record())
        _READS.add(task)
        task.add_done_callback(_forget)
        return await asyncio.shield(task)

    async def _read_and_record(self) -> bytes:
        raw = await self._inner.read()
        try:
            content: dict[str, Any] = {"body": self._hidden(orjson.loads(raw))}
        except orjson.JSONDecodeError:
            content = {"text": self._hidden(raw.decode("utf-8", "replace"))}
        await self._finish(self._answer(**content))
        return raw

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        # The provider's stream is read by a task of the recorder's, not by the client's:
        # a client that leaves (its task cancelled mid-read) or stops early does not cut
        # it short, and the cassette gets the whole stream, as a replay will be asked.
        pieces: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(_AHEAD)
        self._reading = True
        task = asyncio.get_running_loop().create_task(self._read_all(pieces))
        _READS.add(task)
        task.add_done_callback(_forget)
        try:
            while (piece := await pieces.get()) is not None:
                if isinstance(piece, Exception):
                    raise piece
                yield piece
        finally:
            self._detached = True
            while not pieces.empty():  # makes room for a piece being handed over
                pieces.get_nowait()

    async def _read_all(self, pieces: asyncio.Queue[bytes | Exception | None]) -> None:
        copy = _StreamCopy(self._started, self._write_events, self._hidden)
        chunks = self._inner.aiter_bytes()
        told = False  # the client has been given the end, or the error
        try:
            async for chunk in chunks:
                await copy.feed(chunk)
                if not self._detached:
                    await pieces.put(chunk)
            await copy.end()
            if not self._detached:
                await pieces.put(None)
            told = True
        except Exception as err:  # cut before its end: not written, it would replay truncated
            if self._detached:
                log.warning("recording: a stream whose client left is not recorded: %s", err)
            else:
                await pieces.put(err)
            told = True
        finally:
            if not told and not self._detached:  # cancelled (a shutdown): end the client's wait
                while not pieces.empty():
                    pieces.get_nowait()
                pieces.put_nowait(ConnectionError("the recorder stopped reading the stream"))
            await _close(chunks)
            await self._inner.aclose()

    async def aclose(self) -> None:
        if not self._reading:  # else the reading task closes it once the stream has ended
            await self._inner.aclose()


def _reports_error(value: Any) -> bool:
    if isinstance(value, dict):
        return "error" in value
    return isinstance(value, str) and '"error"' in value  # an event that did not parse


async def _close(chunks: AsyncGenerator[bytes, None]) -> None:
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        await closer()


class ReplayedResponse:
    """A recorded answer served again: streams event by event, at once or at the
    recorded pace; ``content-type`` always set."""

    def __init__(self, recorded: RecordedResponse, *, realtime: bool = False) -> None:
        self._recorded = recorded
        self._realtime = realtime
        self.status = recorded.status
        kind = "events" if recorded.is_stream else "text" if recorded.text is not None else "body"
        self.headers: Mapping[str, str] = {"content-type": _CONTENT_TYPES[kind], **recorded.headers}
        self.ends_at_close = False  # the recorded body is whole, however it was framed

    async def read(self) -> bytes:
        recorded = self._recorded
        if recorded.events is not None:
            return b"".join(encode_event(event.raw()) for event in recorded.events)
        if recorded.text is not None:
            return recorded.text.encode()
        return orjson.dumps(recorded.body)

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        if self._recorded.events is None:
            yield await self.read()
            return
        for event in self._recorded.events:
            # Yield to the loop between events even when not pacing, so the server writes
            # each one as it comes instead of one burst.
            await asyncio.sleep(event.delay_ms / 1000 if self._realtime else 0)
            yield encode_event(event.raw())

    async def aclose(self) -> None:
        """Nothing to release."""
