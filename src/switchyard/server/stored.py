"""Stored chat completions: list, get, messages, update metadata, delete.

The shapes are OpenAI's (``/v1/chat/completions`` with ``after``, ``limit``, ``order``,
``model`` and ``metadata[key]=value``); each stored completion also carries
``input_messages`` and ``metadata``. Listings default to newest first, as issue 4 and
Llama Stack's store have it (OpenAI's API documents oldest first; ``order=asc`` gives
that), and a completion's messages to their order in the request, as OpenAI's do.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.errors import InvalidRequestError, NotFoundError
from switchyard.server.http import json_response, read_json
from switchyard.server.state import AppState
from switchyard.server.validation import metadata_problem
from switchyard.store import InferenceStore, ListQuery
from switchyard.store.queries import Order

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
LIST_ORDER: Order = "desc"  # newest first (issue 4, Llama Stack)
MESSAGES_ORDER: Order = "asc"  # as in the request
_METADATA_PARAM = re.compile(r"^metadata\[(.*)\]$", re.DOTALL)  # any key a create took
_BASE = "/v1/chat/completions"

Handler = Callable[[Request], Awaitable[Response]]


def routes(state: AppState) -> list[Route]:
    def store() -> InferenceStore:
        sink = state.sink
        if not isinstance(sink, InferenceStore):
            raise NotFoundError(
                "The inference store is turned off (store.enabled: false in the config)."
            )
        return sink

    async def list_completions(request: Request) -> Response:
        params = request.query_params
        query = ListQuery(
            after=_text(params.get("after"), "after"),
            limit=_limit(params),
            order=_order(params, LIST_ORDER),
            model=_text(params.get("model"), "model"),
            metadata=_metadata_filter(params),
        )
        page = await store().list_completions(query)
        return json_response(page.to_json())

    async def get_completion(request: Request) -> Response:
        return json_response(await store().get_completion(_id(request)))

    async def list_messages(request: Request) -> Response:
        params = request.query_params
        page = await store().list_messages(
            _id(request),
            _text(params.get("after"), "after"),
            _limit(params),
            _order(params, MESSAGES_ORDER),
        )
        return json_response(page.to_json())

    async def update_completion(request: Request) -> Response:
        completion_id = _id(request)
        body = await read_json(request, state.config.server.max_body_bytes)
        metadata = _metadata_update(body)
        return json_response(await store().update_metadata(completion_id, metadata))

    async def delete_completion(request: Request) -> Response:
        return json_response(await store().delete_completion(_id(request)))

    one = _BASE + "/{completion_id}"
    return [
        Route(_BASE, list_completions, methods=["GET"]),
        Route(one, get_completion, methods=["GET"]),
        Route(one, update_completion, methods=["POST"]),
        Route(one, delete_completion, methods=["DELETE"]),
        Route(one + "/messages", list_messages, methods=["GET"]),
    ]


def _id(request: Request) -> str:
    return _no_nul(str(request.path_params["completion_id"]), "completion_id")


def _text(value: str | None, param: str) -> str | None:
    """An optional query parameter: None if absent or empty."""
    return _no_nul(value, param) if value else None


def _no_nul(value: str, param: str) -> str:
    """``value``, refused if it holds a NUL character: no id or stored value has one,
    and PostgreSQL refuses it in a query (a 500 otherwise)."""
    if "\x00" in value:
        raise InvalidRequestError(
            f"{param} must not contain NUL characters (\\u0000).", param=param
        )
    return value


def _limit(params: QueryParams) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequestError(
            f"limit must be an integer between 1 and {MAX_LIMIT} (got {raw!r}).", param="limit"
        )
    return int(raw)


def _order(params: QueryParams, default: Order) -> Order:
    raw = params.get("order") or default
    if raw == "asc":
        return "asc"
    if raw == "desc":
        return "desc"
    raise InvalidRequestError(f"order must be 'asc' or 'desc' (got {raw!r}).", param="order")


def _metadata_filter(params: QueryParams) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in params.multi_items():
        match = _METADATA_PARAM.match(name)
        if match:
            key = _no_nul(match.group(1), name)
            if key in found:  # one would win silently: which, the client cannot tell
                raise InvalidRequestError(
                    f"{name} is given more than once; a metadata filter takes one value per key.",
                    param=name,
                )
            found[key] = _no_nul(value, name)
        elif name.startswith("metadata"):
            # Ignored, it would list every completion where the client meant a filter.
            raise InvalidRequestError(
                f"{name!r} is not a metadata filter; write metadata[key]=value.", param=name
            )
    return found


def _metadata_update(body: Any) -> dict[str, str] | None:
    if not isinstance(body, dict) or "metadata" not in body:
        raise InvalidRequestError(
            'Send a JSON object {"metadata": {...}}: the metadata is the only field of a '
            "stored completion that can be updated.",
            param="metadata",
        )
    unknown = sorted(k for k in body if k != "metadata")
    if unknown:
        raise InvalidRequestError(
            f"Unrecognized request argument supplied: {unknown[0]}. Only the metadata of "
            "a stored completion can be updated.",
            param=unknown[0],
        )
    metadata = body["metadata"]
    if metadata is None:
        return None
    problem = metadata_problem(metadata)
    if problem:
        raise InvalidRequestError(f"metadata {problem}.", param="metadata")
    return dict(metadata)
