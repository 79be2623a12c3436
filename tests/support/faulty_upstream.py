"""An OpenAI-compatible upstream that fails on purpose, chosen by the model name.

ok            a normal chat completion / stream / embedding
status-NNN    answers HTTP NNN with an OpenAI-shaped error body
error-200     answers HTTP 200 with an OpenAI-shaped error body (no choices)
slow          answers after ``slow_seconds`` (for timeouts)
watched       the same, but notices (``abandoned``) when the gateway closes the connection
break-stream  streams one chunk, then an error event
break-batch   the same in one write, so that the chunk and the error arrive together
cut-stream    streams one chunk, then drops the connection
endless       streams a chunk every 20 ms for 10 s
silent-stream sends the headers, then only SSE comments (no event) for 10 s
late-endless  waits 0.5 s before its headers (a queued request), then as endless
flaky         fails with 503 (retry-after-ms: 1200) on the first try, then answers
json-stream   answers a stream with one JSON completion (application/json)
empty-stream  answers a stream with text/event-stream and no event at all
unfinished-stream   streams one chunk, then ends its (chunked) body: no finish_reason, no [DONE]
finished-stream     streams two chunks, the last with its finish_reason; no [DONE]
close-cut-stream    a body that ends when the connection closes (no length, not chunked),
                    after one chunk: no finish_reason, no [DONE]
close-finished-stream   the same framing, after the finish chunk: no [DONE]
close-cut-n2-stream     the same framing, two choices (n=2): only the first finishes
garbled-stream  one chunk, an event that is not JSON, then [DONE]
array-stream    one chunk, an event that is JSON but not an object, the finish chunk, [DONE]
null-stream     the same with "data: null"
    (status-429 also says Retry-After: 7)
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from tests.support.threaded_app import ThreadedApp

_ERROR_EVENT = b'data: {"error": {"message": "model crashed"}}\n\n'


def _chunk(model: str, content: str, finish: str | None = None, index: int = 0) -> bytes:
    chunk = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": index, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "fine"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class FaultyUpstream(ThreadedApp):
    def __init__(self, slow_seconds: float = 3.0, port: int = 0) -> None:
        super().__init__(port, shutdown_timeout=0.5)
        self.slow_seconds = slow_seconds
        self.calls: dict[str, int] = {}
        self.bodies: list[dict[str, Any]] = []
        self.aborted = 0  # endless streams whose reader went away
        self.abandoned = 0  # "watched" requests whose connection the gateway closed

    def start(self) -> FaultyUpstream:
        self.start_thread()
        return self

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    async def _endless(self, response: web.StreamResponse, chunk: bytes) -> web.StreamResponse:
        try:
            for _ in range(500):
                await asyncio.sleep(0.02)
                await response.write(chunk)
        except (ConnectionResetError, ConnectionError):
            self.aborted += 1
        return response

    async def _models(self, request: web.Request) -> web.Response:
        names = ["ok", "slow", "break-stream", "break-batch", "cut-stream", "endless"]
        names += ["silent-stream", "late-endless", "flaky", "text-embed", "json-stream"]
        names += ["empty-stream", "unfinished-stream", "finished-stream", "close-cut-stream"]
        names += ["close-finished-stream", "close-cut-n2-stream", "error-200"]
        data = [{"id": n, "object": "model", "created": 1, "owned_by": "test"} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        data = [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 1.0]}]
        payload = {"object": "list", "data": data, "model": body["model"], "usage": {}}
        return web.json_response(payload)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        model = body["model"]
        self.calls[model] = self.calls.get(model, 0) + 1
        if model.startswith("status-"):
            return self._status(request, int(model.removeprefix("status-")))
        if model in ("html-502", "error-200"):
            return _canned(model)
        if model == "flaky" and self.calls[model] == 1:
            return web.json_response(
                {"error": {"message": "busy"}}, status=503, headers={"retry-after-ms": "1200"}
            )
        if model == "slow":
            await asyncio.sleep(self.slow_seconds)
        if model == "watched" and await self._abandoned(request):
            return web.Response()
        if body.get("stream") and model != "json-stream":
            return await self._stream(request, model)
        return web.json_response(_completion(model))

    @staticmethod
    def _status(request: web.Request, status: int) -> web.Response:
        said = f"upstream says {status}"
        if status == 401:  # as some providers do: the key it refused, quoted back
            said += f"; incorrect API key provided: {request.headers.get('Authorization')}"
        error = {
            "message": said,
            "type": "test_error",
            "param": "temperature",
            "code": "invalid_api_key" if status == 401 else None,
        }
        headers = {"Retry-After": "7"} if status == 429 else None
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _abandoned(self, request: web.Request) -> bool:
        """Waits ``slow_seconds``; True (and counted) if the gateway closes meanwhile."""
        for _ in range(int(self.slow_seconds / 0.02)):
            await asyncio.sleep(0.02)
            if request.transport is None or request.transport.is_closing():
                self.abandoned += 1
                return True
        return False

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        if model == "late-endless":
            await asyncio.sleep(0.5)
            if request.transport is None or request.transport.is_closing():
                self.aborted += 1  # the gateway gave up on it before it began
                return web.Response()
            model = "endless"
        if model in _CLOSE_DELIMITED:
            # Written past aiohttp, which frames every HTTP/1.1 body it writes.
            assert request.transport is not None
            request.transport.write(_CLOSE_DELIMITED[model])
            request.transport.close()  # after what is written: the body's end
            return web.Response()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if model == "silent-stream":
            return await self._endless(response, b": still thinking\n\n")
        if model == "endless":
            await response.write(_FIRST)
            return await self._endless(response, _chunk(model, "more"))
        for piece in _SCRIPTS.get(model, _SCRIPTS["ok"]):
            if piece is None:  # the connection dropped mid-stream
                assert request.transport is not None
                request.transport.close()
                break
            await response.write(piece)
        return response


def _canned(model: str) -> web.Response:
    if model == "html-502":  # a proxy's page in front of the provider
        page = "<html><body><h1>502 Bad Gateway</h1>upstream 10.1.2.3:8000</body></html>"
        return web.Response(text=page, status=502, content_type="text/html")
    return web.json_response({"error": {"message": "model overloaded", "type": "x"}})


_FIRST = _chunk("up", "first")
_LAST = _chunk("up", " second", "stop")
# What each stream model writes, a write per item (None: the connection is cut there).
_SCRIPTS: dict[str, list[bytes | None]] = {
    "ok": [_FIRST, _LAST, b"data: [DONE]\n\n"],
    "empty-stream": [],
    "break-stream": [_FIRST, _ERROR_EVENT],
    "break-batch": [_FIRST + _ERROR_EVENT],
    "cut-stream": [_FIRST, None],
    "unfinished-stream": [_FIRST],
    "finished-stream": [_FIRST, _LAST],
    "only-done-stream": [b"data: [DONE]\n\n"],
    "coded-error-stream": [
        _FIRST,
        b'data: {"error": {"message": "rate limited", "type": "rate_limit_error", '
        b'"code": "rate_limit_exceeded"}}\n\n',
    ],
    # [DONE] ended by one newline, the body's end: TGI's last chunk has no finish_reason.
    "short-done-stream": [_FIRST, b"data: [DONE]\n"],
    "string-error-stream": [
        _FIRST,
        b'data: {"error": "model overloaded"}\n\n',
        b"data: [DONE]\n\n",
    ],
    # An event that is not JSON, and one that is JSON but not an object, mid-stream.
    "garbled-stream": [_FIRST, b'data: {"id": "x", "choi\n\n', b"data: [DONE]\n\n"],
    "array-stream": [_FIRST, b"data: [1, 2]\n\n", _LAST, b"data: [DONE]\n\n"],
    "null-stream": [_FIRST, b"data: null\n\n", _LAST, b"data: [DONE]\n\n"],
    # Events with empty data (keep-alives, as some servers send them): not events at all.
    "empty-data-stream": [_FIRST, b"data: \n\n", b"data:\n\n", _LAST, b"data: [DONE]\n\n"],
}
_HEAD_TO_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
_CLOSE_DELIMITED = {
    "close-cut-stream": _HEAD_TO_CLOSE + _FIRST,
    "close-finished-stream": _HEAD_TO_CLOSE + _FIRST + _LAST,
    "close-cut-n2-stream": _HEAD_TO_CLOSE + _FIRST + _chunk("up", "other", index=1) + _LAST,
}
