"""GET /openapi.json: an OpenAPI 3.1 document of every route, built once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard._version import __version__
from switchyard.server import stored
from switchyard.server.auth import OPEN_PATHS
from switchyard.server.http import json_response
from switchyard.server.validation import (
    MAX_EMBEDDING_INPUTS,
    METADATA_KEY_MAX,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX,
    MODEL_MAX,
)

_OBJ = {"type": "object", "additionalProperties": True}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_STORED = "/v1/chat/completions/{completion_id}"
_METADATA = {
    "type": "object",
    "maxProperties": METADATA_MAX_KEYS,
    "propertyNames": {"maxLength": METADATA_KEY_MAX},
    "additionalProperties": {**_STR, "maxLength": METADATA_VALUE_MAX},
}
_STOP = {"oneOf": [_STR, {"type": "array", "items": _STR}]}
_TOKENS = {"type": "array", "items": _INT, "minItems": 1}
_MODEL = {**_STR, "minLength": 1, "maxLength": MODEL_MAX}

_SAMPLING = {
    "model": _MODEL,
    "stream": _BOOL,
    "stream_options": {"type": "object", "properties": {"include_usage": _BOOL}},
    "n": {**_INT, "minimum": 1, "maximum": 128},
    "temperature": {**_NUM, "minimum": 0, "maximum": 2},
    "top_p": {**_NUM, "minimum": 0, "maximum": 1},
    "max_tokens": {**_INT, "minimum": 0},
    "stop": _STOP,
    "seed": _INT,
    "presence_penalty": {**_NUM, "minimum": -2, "maximum": 2},
    "frequency_penalty": {**_NUM, "minimum": -2, "maximum": 2},
    "user": _STR,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": _STR,
                    "type": _STR,
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,
        "properties": {
            **_SAMPLING,
            "messages": {"type": "array", "minItems": 1, "items": _OBJ},
            "max_completion_tokens": {**_INT, "minimum": 0},
            "logprobs": _BOOL,
            "top_logprobs": {**_INT, "minimum": 0, "maximum": 20},
            "tools": {"type": "array", "items": _OBJ},
            "tool_choice": {"oneOf": [_STR, _OBJ]},
            "parallel_tool_calls": _BOOL,
            "response_format": _OBJ,
            "store": _BOOL,
            "metadata": _METADATA,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": True,
        "properties": {
            **_SAMPLING,
            "prompt": {
                "oneOf": [
                    _STR,
                    {"type": "array", "items": _STR, "minItems": 1},
                    _TOKENS,
                    {"type": "array", "items": _TOKENS, "minItems": 1},
                ]
            },
            "suffix": _STR,
            "echo": _BOOL,
            "best_of": {**_INT, "minimum": 1, "maximum": 20},
            "logprobs": {"oneOf": [{**_INT, "minimum": 0, "maximum": 5}, _BOOL]},
        },
    },
    "MetadataUpdate": {
        "type": "object",
        "required": ["metadata"],
        "properties": {
            "metadata": {
                "description": "Replaces the stored metadata; null removes it.",
                "oneOf": [_METADATA, {"type": "null"}],
            }
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _MODEL,
            "input": {
                "oneOf": [
                    {**_STR, "minLength": 1},
                    {
                        "type": "array",
                        "items": {**_STR, "minLength": 1},
                        "minItems": 1,
                        "maxItems": MAX_EMBEDDING_INPUTS,
                    },
                    _TOKENS,  # one text as token ids: no count limit
                    {
                        "type": "array",
                        "items": _TOKENS,
                        "minItems": 1,
                        "maxItems": MAX_EMBEDDING_INPUTS,
                    },
                ]
            },
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {**_INT, "minimum": 1},
            "user": _STR,
        },
    },
}

# What each kind of route can answer besides 200, and why (``errors.py`` maps them).
# A 401 is added to every route that asks for a key (all but ``auth.OPEN_PATHS``), a 403
# to every route (``browsers`` answers before routing), a 415 to every route with a body.
_MODEL_CALL = ("400", "404", "409", "413", "429", "502", "503", "504")
_STORE = ("400", "404", "503")
_LOOKUP = ("404",)
_WHY = {
    "400": "Invalid request (the message names the field)",
    "401": "No or wrong API key (when server.api_keys is set)",
    "403": "A browser's Origin or a Host that server settings do not allow",
    "404": "Unknown model or id",
    "409": "The provider refused it as a conflict (its status is passed on)",
    "413": "Body larger than server.max_body_bytes (or than the provider takes)",
    "415": "A compressed body (Content-Encoding): send it uncompressed",
    "429": "The provider is rate limiting (its Retry-After is passed on)",
    "502": "The provider failed",
    "503": "The provider or the store cannot be reached",
    "504": "The provider timed out",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _paging(order: str, what: str) -> list[dict[str, Any]]:
    return [
        _query("after", _STR, f"The last id of the previous page: {what} after it."),
        _query(
            "limit",
            {**_INT, "minimum": 1, "maximum": stored.MAX_LIMIT, "default": stored.DEFAULT_LIMIT},
            "How many to return.",
        ),
        _query("order", {"enum": ["asc", "desc"], "default": order}, "By creation time."),
    ]


_LIST_FILTERS = [
    _query("model", _STR, "Only completions of this model id (as the client sent it)."),
    {
        **_query(
            "metadata",
            {"type": "object", "additionalProperties": _STR},
            "metadata[key]=value: only completions whose metadata has that value.",
        ),
        "style": "deepObject",
        "explode": True,
    },
]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    errors: tuple[str, ...] = ()
    body: str | None = None  # the request body's schema
    streams: bool = False  # answers with SSE when the request asks to stream
    query: list[dict[str, Any]] = field(default_factory=list)
    answers: str = "application/json"  # the media type of a 200


OPERATIONS: list[Operation] = [
    Operation(
        "post",
        "/v1/chat/completions",
        "Create a chat completion",
        _MODEL_CALL,
        "ChatCompletionRequest",
        streams=True,
    ),
    Operation(
        "post",
        "/v1/completions",
        "Create a text completion",
        _MODEL_CALL,
        "CompletionRequest",
        streams=True,
    ),
    Operation("post", "/v1/embeddings", "Create embeddings", _MODEL_CALL, "EmbeddingRequest"),
    Operation(
        "get",
        "/v1/chat/completions",
        "List stored chat completions",
        _STORE,
        query=_paging(stored.LIST_ORDER, "completions") + _LIST_FILTERS,
    ),
    Operation("get", _STORED, "Get a stored chat completion", _STORE),
    Operation("post", _STORED, "Update its metadata", (*_STORE, "413"), "MetadataUpdate"),
    Operation("delete", _STORED, "Delete a stored completion", _STORE),
    Operation(
        "get",
        _STORED + "/messages",
        "List a stored completion's input messages",
        _STORE,
        query=_paging(stored.MESSAGES_ORDER, "messages"),
    ),
    Operation("get", "/v1/models", "List models"),
    Operation("get", "/v1/models/{model_id}", "Get a model (ids contain '/')", _LOOKUP),
    Operation("get", "/v1/providers", "List providers"),
    Operation("get", "/v1/providers/{provider_id}", "Get a provider", _LOOKUP),
    Operation("get", "/v1/health", "Health"),
    Operation("get", "/v1/version", "Version"),
    Operation("get", "/metrics", "Prometheus metrics", answers="text/plain"),
]


def _operation(op: Operation) -> dict[str, Any]:
    answer = _OBJ if op.answers == "application/json" else _STR
    content: dict[str, Any] = {op.answers: {"schema": answer}}
    if op.streams:
        content["text/event-stream"] = {"schema": _STR}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    errors = {"403", *op.errors}
    if op.path not in OPEN_PATHS:
        errors.add("401")
    if op.body:
        errors.add("415")
    responses.update({status: {"description": _WHY[status], **error} for status in sorted(errors)})
    document: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if op.body:
        ref = {"$ref": f"#/components/schemas/{op.body}"}
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref}},
        }
    in_path = [seg[1:-1] for seg in op.path.split("/") if seg.startswith("{")]
    parameters = [{"name": p, "in": "path", "required": True, "schema": _STR} for p in in_path]
    parameters += op.query
    if parameters:
        document["parameters"] = parameters
    return document


_REQUESTS = ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest")


def _null_is_absent(schema: dict[str, Any]) -> dict[str, Any]:
    """A request schema whose optional fields also take null: the server reads a null
    as the field left out (validation.py), as OpenAI's SDKs and spec send and allow."""
    required = set(schema.get("required", ()))
    properties = {
        name: field if name in required else {"anyOf": [field, {"type": "null"}]}
        for name, field in schema["properties"].items()
    }
    return {**schema, "properties": properties}


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    schemas = {k: _null_is_absent(v) if k in _REQUESTS else v for k, v in SCHEMAS.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def routes() -> list[Route]:
    document = build_document()

    async def openapi(request: Request) -> Response:
        return json_response(document)

    return [Route("/openapi.json", openapi, methods=["GET"])]
