"""POST /v1/chat/completions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.ids import new_completion_id
from switchyard.router import route
from switchyard.server.auth import CALLER
from switchyard.server.http import (
    EventStream,
    bytes_response,
    parse_json_bytes,
    read_body,
    unless_client_leaves,
)
from switchyard.server.state import AppState
from switchyard.server.stream import Tap, relay
from switchyard.server.validation import CHAT, check_body, check_messages
from switchyard.sink import Record

# Ours, not the provider's: consumed by the inference store, never sent upstream.
LOCAL_FIELDS = frozenset({"store", "metadata"})


def routes(state: AppState) -> list[Route]:
    return [Route("/v1/chat/completions", _create(state), methods=["POST"])]


def _create(state: AppState) -> Callable[[Request], Awaitable[Response]]:
    limit = state.config.server.max_body_bytes

    async def create_chat_completion(request: Request) -> Response:
        raw, body = parse_json_bytes(await read_body(request, limit), request)
        check_body(body, CHAT, ("model", "messages"))
        check_messages(body["messages"])
        entry, provider = route(state.registry, body["model"], "llm")
        upstream = {k: v for k, v in body.items() if k not in LOCAL_FIELDS}
        upstream["model"] = entry.provider_model_id
        # One clock read for the id and the row's time: a listing pages on by the time
        # in a deleted row's id.
        started_ns = time.time_ns()
        started = started_ns / 1e9
        overrides = {"id": new_completion_id(started_ns), "model": body["model"]}
        sink = state.sink if state.sink is not None and state.sink.should_store(body) else None
        caller = request.scope.get(CALLER)  # the key's id, with server.api_keys
        if body.get("stream"):
            chunks = await unless_client_leaves(request, provider.chat_stream(upstream))
            if sink is None:
                return EventStream(relay(chunks, overrides))
            tap = Tap()

            async def store_stream() -> None:
                answer = tap.answer()
                if answer is None:
                    return
                upstream_id = tap.provider_completion_id
                record = _record(
                    raw,
                    answer,
                    entry.provider_id,
                    started,
                    upstream_id,
                    True,
                    caller,
                    overrides,
                    # The tap's array of JSON values, chunks under our id: stored as it
                    # is and assembled when read, if mostly texts (bench/NOTES.md, 62).
                    checked=tap.stored_as_chunks(),
                )
                waiting = sink.hand_over(record)
                if waiting is not None:
                    await waiting

            return EventStream(relay(chunks, overrides, tap, store_stream))
        # A client that leaves (its SDK's timeout, then a retry) stops the provider's
        # work: nobody would read the answer, and it would be stored under an id no
        # client was given.
        result = await unless_client_leaves(request, provider.chat(upstream))
        upstream_id = result.get("id")
        result.update(overrides)
        answer = orjson.dumps(result)
        if sink is not None:
            # Serialised here from a plain dict holding our id: the writer need not parse
            # it again (bench/NOTES.md, 57). A plugin's dict subclass may not hold it.
            record = _record(
                raw,
                answer,
                entry.provider_id,
                started,
                upstream_id,
                False,
                caller,
                overrides,
                checked=type(result) is dict,
            )
            waiting = sink.hand_over(record)
            if waiting is not None:
                await waiting
        return bytes_response(answer)

    return create_chat_completion


def _record(
    raw: bytes,
    answer: bytes,
    provider_id: str,
    started: float,
    upstream_id: Any,
    streamed: bool,
    caller: str | None,
    overrides: dict[str, Any],
    checked: bool = False,
) -> Record:
    """What the store keeps of a call: bytes the handler has, as they are. Not a
    StoredCall: the fewer calls between here and the queue, the cheaper (writer.put).
    The provider's id is made a plain str, as the record's marshal needs (a plugin's
    provider may give anything)."""
    if upstream_id is not None and type(upstream_id) is not str:
        upstream_id = str(upstream_id)
    return (
        raw,
        answer,
        provider_id,
        started,
        time.time(),
        upstream_id,
        streamed,
        caller,
        overrides["id"],
        checked,
    )
