"""POST /v1/chat/completions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.ids import new_completion_id
from switchyard.router import route
from switchyard.server.http import EventStream, bytes_response, parse_json, read_body
from switchyard.server.state import AppState
from switchyard.server.stream import Tap, relay
from switchyard.server.validation import CHAT, check_body, check_messages
from switchyard.sink import StoredCall

# Ours, not the provider's: consumed by the inference store, never sent upstream.
LOCAL_FIELDS = frozenset({"store", "metadata"})


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/chat/completions", _create(state), methods=["POST"])]


def _create(state: AppState) -> Callable[[Request], Awaitable[Response]]:
    limit = state.config.server.max_body_bytes

    async def create_chat_completion(request: Request) -> Response:
        raw = await read_body(request, limit)
        body = parse_json(raw)
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
            tap = Tap()

            async def store_stream() -> None:
                call = StoredCall(
                    raw,
                    entry.provider_id,
                    started,
                    time.time(),
                    events=b"".join(tap.events),
                    provider_completion_id=tap.provider_completion_id,
                    completion_id=overrides["id"],
                )
                await sink.completion_finished(call)

            return EventStream(relay(chunks, overrides, tap, store_stream))
        result = await provider.chat(upstream)
        provider_completion_id = result.get("id")
        result.update(overrides)
        answer = orjson.dumps(result)
        if sink is not None:
            call = StoredCall(
                raw,
                entry.provider_id,
                started,
                time.time(),
                completion=answer,
                provider_completion_id=provider_completion_id,
                completion_id=overrides["id"],
            )
            await sink.completion_finished(call)
        return bytes_response(answer)

    return create_chat_completion
