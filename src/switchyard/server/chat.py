"""POST /v1/chat/completions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.ids import new_completion_id
from switchyard.router import route
from switchyard.server.http import json_response, read_json, sse_response
from switchyard.server.state import AppState, StoredCall
from switchyard.server.stream import relay
from switchyard.server.validation import CHAT, check_body, check_messages

# Ours, not the provider's: consumed by the inference store, never sent upstream.
LOCAL_FIELDS = frozenset({"store", "metadata"})


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/chat/completions", _create(state), methods=["POST"])]


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
                return sse_response(relay(chunks, overrides))
            collected: list[dict[str, Any]] = []
            first_ids: list[Any] = []

            def collect(chunk: dict[str, Any]) -> None:
                if not collected:
                    first_ids.append(chunk.get("id"))
                collected.append(chunk)

            async def store_stream() -> None:
                call = StoredCall(body, entry.provider_id, started, time.time(), chunks=collected)
                call.provider_completion_id = first_ids[0] if first_ids else None
                await sink.completion_finished(call)

            return sse_response(relay(chunks, overrides, collect, store_stream))
        result = await provider.chat(upstream)
        provider_completion_id = result.get("id")
        result.update(overrides)
        if sink is not None:
            await sink.completion_finished(
                StoredCall(
                    body,
                    entry.provider_id,
                    started,
                    time.time(),
                    completion=result,
                    provider_completion_id=provider_completion_id,
                )
            )
        return json_response(result)

    return create_chat_completion
