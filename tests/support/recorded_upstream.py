"""A fake provider for tests: a real HTTP server on 127.0.0.1 replaying recorded exchanges.

It speaks the provider's wire format (JSON answers, ``text/event-stream`` streams, the model
list) so that provider adapters and the whole gateway can be tested against what providers
really sent. Requests are matched on their JSON body; a miss answers 400 with a message
naming the closest recording's differing keys, which is what you need to fix the test.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from switchyard.recording.llama_stack import (
    MODELS,
    RecordedExchange,
    load_dir,
    normalise_path,
)
from switchyard.recording.sse import DONE, encode_event

# What no endpoint of Switchyard serves, in the recorded model lists: image, video,
# music, speech, transcription, realtime and Live API models, moderation, Gemini's AQA,
# and the models OpenAI serves only through its Responses API.
NOT_SERVED = re.compile(
    r"image|dall-e|sora|imagen|veo|lyria|flux|tts|whisper|transcribe|realtime|live|"
    r"native-audio|moderation|aqa|"
    r"\b(o\d+|gpt-[\d.]+)-pro\b|codex|computer-use"
)

__all__ = ["RecordedUpstream", "exchanges_for", "recordings_root"]


def recordings_root() -> Path:
    """Folder of provider folders; the repository sits beside ``shared/``."""
    override = os.environ.get("SWITCHYARD_RECORDINGS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "recordings" / "llama-stack"


def exchanges_for(provider: str) -> list[RecordedExchange]:
    """All recordings of ``provider`` (e.g. ``"together"``), sorted by file name."""
    return list(_load_provider(str(recordings_root()), provider))


@functools.cache
def _load_provider(root: str, provider: str) -> tuple[RecordedExchange, ...]:
    folder = Path(root) / provider
    if not folder.is_dir():
        raise FileNotFoundError(f"no recordings for provider {provider!r} in {root}")
    return tuple(load_dir(folder))


def canonical_body(body: Any) -> Any:
    """The body as compared for matching: recorder artifacts removed, 1.0 == 1.

    The recorder kept the SDK's ``extra_body`` argument as a key although the SDK merges it
    into the JSON it sends, so it is merged here too (an empty one simply disappears).
    """
    if isinstance(body, dict) and isinstance(body.get("extra_body"), dict):
        body = dict(body)
        extra = body.pop("extra_body")
        for key, value in extra.items():
            body.setdefault(key, value)
    return _numbers_normalised(body)


def _numbers_normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _numbers_normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_normalised(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _body_key(body: Any) -> bytes:
    return orjson.dumps(canonical_body(body), option=orjson.OPT_SORT_KEYS)


def _error(status: int, message: str, code: str) -> web.Response:
    payload = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _short(value: Any, limit: int = 120) -> str:
    text = orjson.dumps(value).decode() if value is not _MISSING else "<absent>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MISSING = object()


def _differing_keys(expected: dict[str, Any] | None, got: dict[str, Any]) -> list[str]:
    """Top-level keys whose values differ between two bodies (compared canonically)."""
    expected, got = canonical_body(expected or {}), canonical_body(got)
    keys = sorted(set(expected) | set(got))
    return [key for key in keys if expected.get(key, _MISSING) != got.get(key, _MISSING)]


class RecordedUpstream:
    """Serve ``exchanges`` over HTTP as their provider did.

    ``models_override`` replaces the recorded model list and is served verbatim (Together
    answers ``/models`` with a bare JSON list, which was not recorded).
    """

    def __init__(
        self,
        exchanges: list[RecordedExchange],
        *,
        models_override: dict[str, Any] | list[Any] | None = None,
    ) -> None:
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.auth_headers: list[str | None] = []
        self._by_key: dict[tuple[str, bytes], list[RecordedExchange]] = defaultdict(list)
        self._by_endpoint: dict[str, list[RecordedExchange]] = defaultdict(list)
        self._cursors: dict[tuple[str, bytes], int] = defaultdict(int)
        for exchange in exchanges:
            if exchange.endpoint == MODELS:
                continue
            self._by_key[(exchange.endpoint, _body_key(exchange.body))].append(exchange)
            self._by_endpoint[exchange.endpoint].append(exchange)
        self._models = models_override if models_override is not None else _models(exchanges)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started; callers append ``/v1`` or a prefix."""
        if self._port is None:
            raise RuntimeError("RecordedUpstream is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handlers still streaming at stop() are cancelled after this grace period.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RecordedUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- running from synchronous code -------------------------------------------------

    def start_in_thread(self) -> None:
        """Run the server on its own event loop in a daemon thread; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("already running in a thread")
        loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = threading.Thread(
            target=self._thread_main, args=(loop, started), name="recorded-upstream", daemon=True
        )
        thread.start()
        started.wait()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        except BaseException:
            self.stop_thread()
            raise

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = self._thread = None

    @staticmethod
    def _thread_main(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- serving -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.auth_headers.append(request.headers.get("Authorization"))
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            self.requests.append((request.method, request.path, None))
            return _error(400, "request body is not valid JSON", "invalid_json")
        self.requests.append((request.method, request.path, body))
        endpoint = normalise_path(request.path)
        if endpoint == MODELS and request.method == "GET":
            return self._serve_models()
        if request.method != "POST":
            return _error(404, f"no route for {request.method} {request.path}", "not_found")
        return await self._replay(request, endpoint, body)

    async def _replay(self, request: web.Request, endpoint: str, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_body")
        exchange = self._match(endpoint, body)
        if exchange is None:
            return _error(400, self._miss_message(endpoint, body), "no_recording")
        if exchange.events is not None:
            return await self._stream(request, exchange)
        return web.Response(
            status=exchange.status,
            body=orjson.dumps(exchange.response),
            content_type="application/json",
        )

    def _serve_models(self) -> web.Response:
        if self._models is None:
            return _error(404, "no model list was recorded for this provider", "not_found")
        return web.Response(body=orjson.dumps(self._models), content_type="application/json")

    def _match(self, endpoint: str, body: dict[str, Any]) -> RecordedExchange | None:
        key = (endpoint, _body_key(body))
        candidates = self._by_key.get(key)
        if not candidates:
            return None
        # Identical requests replay in recorded order, then start over.
        index = self._cursors[key] % len(candidates)
        self._cursors[key] = index + 1
        return candidates[index]

    async def _stream(self, request: web.Request, exchange: RecordedExchange) -> web.StreamResponse:
        response = web.StreamResponse(
            status=exchange.status,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        for event in exchange.events or ():
            await response.write(encode_event(orjson.dumps(event)))
            # Let the event loop flush this event before the next one, so that a client sees
            # a stream of separate chunks rather than one burst.
            await asyncio.sleep(0)
        await response.write(encode_event(DONE))
        await response.write_eof()
        return response

    def _miss_message(self, endpoint: str, body: dict[str, Any]) -> str:
        recorded = self._by_endpoint.get(endpoint)
        head = f"no recording matches POST {endpoint}"
        if not recorded:
            return f"{head}: nothing recorded for this endpoint"
        got = canonical_body(body)
        closest = min(recorded, key=lambda exchange: len(_differing_keys(exchange.body, got)))
        expected = canonical_body(closest.body)
        details = "; ".join(
            f"{key}: recorded {_short(expected.get(key, _MISSING))}, "
            f"got {_short(got.get(key, _MISSING))}"
            for key in _differing_keys(expected, got)
        )
        return f"{head}; closest recording {Path(closest.source).name} differs in {details}"


def _models(exchanges: list[RecordedExchange]) -> Any:
    """The largest recorded model list (the last one among equally large)."""
    lists = [exchange.response for exchange in exchanges if exchange.endpoint == MODELS]
    if not lists:
        return None
    return max(reversed(lists), key=lambda response: len(response["data"]))
