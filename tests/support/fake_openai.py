"""A tiny OpenAI-compatible upstream for end-to-end tests, speaking OpenAI's wire format.

Answers are deterministic functions of the request, so a test can say what should
have been stored (:func:`expected_message`):

- the reply is ``"echo: " + <text of the last message>``, streamed a few words per chunk;
- with ``tools``, it calls the first one or two of them instead (``finish_reason``
  ``tool_calls``); streamed, each call's arguments arrive in pieces by ``index``;
- ``n`` choices, ``logprobs`` per streamed piece, usage (streams: with
  ``stream_options.include_usage``, on a last chunk with no choices);
- ``fake_delay`` (seconds, an unknown field Switchyard passes through) delays the answer.

Every answer carries the same provider id, ``chatcmpl-fake``: providers' ids repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web
from tests.support.threaded_app import ThreadedApp

PROVIDER_ID = "chatcmpl-fake"
MODEL = "gpt-fake"
CREATED = 1_700_000_000
JSON = dict[str, Any]


def last_text(body: JSON) -> str:
    content = body["messages"][-1].get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content or "")


def tool_calls(body: JSON) -> list[JSON]:
    tools = body.get("tools") or []
    calls = []
    for i, tool in enumerate(tools[:2]):
        arguments = json.dumps({"q": last_text(body), "i": i})
        name = tool["function"]["name"]
        calls.append(
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return calls


def expected_message(body: JSON) -> JSON:
    """The assistant message the fake answers ``body`` with (every choice is the same)."""
    calls = tool_calls(body)
    # refusal: null, as OpenAI's schema has it in every assistant message.
    if calls:
        return {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
    return {"role": "assistant", "content": "echo: " + last_text(body), "refusal": None}


def _usage() -> JSON:
    return {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def completion(body: JSON) -> JSON:
    message = expected_message(body)
    finish = "tool_calls" if "tool_calls" in message else "stop"
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
        for i in range(body.get("n") or 1)
    ]
    return {
        "id": PROVIDER_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": body["model"],
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": _usage(),
    }


def _pieces(text: str, parts: int = 3) -> list[str]:
    step = max(1, -(-len(text) // parts))
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def _choice_deltas(body: JSON) -> list[tuple[JSON, JSON | None]]:
    """(delta, logprobs) for one choice, in order, before the finish."""
    message = expected_message(body)
    if "tool_calls" in message:
        deltas: list[tuple[JSON, JSON | None]] = [({"role": "assistant", "content": None}, None)]
        for i, call in enumerate(message["tool_calls"]):
            head = {"index": i, "id": call["id"], "type": "function"}
            function = {"name": call["function"]["name"], "arguments": ""}
            deltas.append(({"tool_calls": [{**head, "function": function}]}, None))
            for piece in _pieces(call["function"]["arguments"]):
                deltas.append(
                    ({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, None)
                )
        return deltas
    deltas = [({"role": "assistant", "content": ""}, None)]
    for piece in _pieces(message["content"]):
        logprobs = None
        if body.get("logprobs"):
            token = {
                "token": piece,
                "logprob": -0.5,
                "bytes": list(piece.encode()),
                "top_logprobs": [],
            }
            logprobs = {"content": [token], "refusal": None}
        deltas.append(({"content": piece}, logprobs))
    return deltas


def stream_chunks(body: JSON) -> list[JSON]:
    def chunk(choices: list[JSON], usage: JSON | None = None) -> JSON:
        return {
            "id": PROVIDER_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": usage,
        }

    n = body.get("n") or 1
    finish = "tool_calls" if body.get("tools") else "stop"
    chunks = []
    for delta, logprobs in _choice_deltas(body):
        chunks.append(
            chunk(
                [
                    {"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": None}
                    for i in range(n)
                ]
            )
        )
    chunks.append(
        chunk(
            [{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish} for i in range(n)]
        )
    )
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append(chunk([], _usage()))
    return chunks


class FakeOpenAI(ThreadedApp):
    """The fake upstream on 127.0.0.1, on its own loop in a daemon thread."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context=ssl_context)
        self.calls = 0
        self.via: list[str | None] = []  # each request's Via header (set by proxies)

    def provider_config(self, provider_id: str = "fake") -> JSON:
        return {
            "id": provider_id,
            "type": "openai_compatible",
            "base_url": self.url + "/v1",
            "max_retries": 0,
        }

    def start(self) -> None:
        self.start_thread()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        self.via.append(request.headers.get("Via"))
        entry = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [entry]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.via.append(request.headers.get("Via"))
        body = orjson.loads(await request.read())
        if body.get("fake_delay"):
            await asyncio.sleep(float(body["fake_delay"]))
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(completion(body)), content_type="application/json"
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in stream_chunks(body):
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@contextlib.contextmanager
def fake_openai(ssl_context: ssl.SSLContext | None = None) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(ssl_context)
    server.start()
    try:
        yield server
    finally:
        server.stop()
