"""POST /v1/chat/completions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.ids import new_completion_id
from switchyard.providers.base import ModelEntry
from switchyard.router import route
from switchyard.server.http import EventStream, json_response, read_json
from switchyard.server.state import AppState
from switchyard.server.stream import relay
from switchyard.server.validation import CHAT, check_body, check_messages
from switchyard.sink import CompletionSink, StoredCall

# Ours, not the provider's: consumed by the inference store, never sent upstream.
LOCAL_FIELDS = frozenset({"store", "metadata"})


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/chat/completions", _create(state), methods=["POST"])]


class _Collector:
    """Keeps a stream's chunks for the store; the first one tells the provider's id
    (the relay replaces it with ours right after this sees it)."""

    __slots__ = ("chunks", "provider_completion_id")

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.provider_completion_id: Any = None

    def __call__(self, chunk: dict[str, Any]) -> None:
        if not self.chunks:
            self.provider_completion_id = chunk.get("id")
        self.chunks.append(chunk)


def _create(state: AppState) -> Callable[[Request], Awaitable[Response]]:
    limit = state.config.server.max_body_bytes

    async def create_chat_completion(request: Request) -> Response:
        body = await read_json(request, limit)
        check_body(body, CHAT, ("model", "messages"))
        check_messages(body["messages"])
        entry, provider = route(state.registry, body["model"], "llm")
        upstream = {k: v for k, v in body.items() if k not in LOCAL_FIELDS}
        upstream["model"] = entry.provider_model_id
        overrides = {"id": new_completion_id(), "model": body["model"]}
        sink = state.sink if state.sink is not None and state.sink.should_store(body) else None
        started = time.time()
        if body.get("stream"):
            chunks = await provider.chat_stream(upstream)
            if sink is None:
                return EventStream(relay(chunks, overrides))
            collect = _Collector()

            async def store_stream() -> None:
                call = StoredCall(
                    body, entry.provider_id, started, time.time(), chunks=collect.chunks
                )
                call.provider_completion_id = collect.provider_completion_id
                await sink.completion_finished(call)

            return EventStream(relay(chunks, overrides, collect, store_stream))
        result = await provider.chat(upstream)
        if sink is not None:
            await _store(sink, body, entry, started, result, overrides)
        else:
            result.update(overrides)
        return json_response(result)

    return create_chat_completion


async def _store(
    sink: CompletionSink,
    body: dict[str, Any],
    entry: ModelEntry,
    started: float,
    result: dict[str, Any],
    overrides: dict[str, Any],
) -> None:
    provider_completion_id = result.get("id")
    result.update(overrides)
    call = StoredCall(body, entry.provider_id, started, time.time(), completion=result)
    call.provider_completion_id = provider_completion_id
    await sink.completion_finished(call)
