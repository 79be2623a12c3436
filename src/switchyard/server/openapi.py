"""GET /openapi.json: an OpenAPI 3.1 document of every route, built once at start."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard._version import __version__
from switchyard.server.http import json_response

_OBJ = {"type": "object", "additionalProperties": True}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_STOP = {"oneOf": [_STR, {"type": "array", "items": _STR, "maxItems": 4}]}

_SAMPLING = {
    "model": _STR,
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
            "metadata": {"type": "object", "additionalProperties": _STR},
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": True,
        "properties": {
            **_SAMPLING,
            "prompt": {"oneOf": [_STR, {"type": "array"}]},
            "suffix": _STR,
            "echo": _BOOL,
            "best_of": {**_INT, "minimum": 1, "maximum": 20},
            "logprobs": {"oneOf": [{**_INT, "minimum": 0, "maximum": 5}, _BOOL]},
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _STR,
            "input": {"oneOf": [_STR, {"type": "array", "minItems": 1}]},
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {**_INT, "minimum": 1},
            "user": _STR,
        },
    },
}

# (method, path, summary, request schema or None, answers with SSE when streaming)
OPERATIONS: list[tuple[str, str, str, str | None, bool]] = [
    ("post", "/v1/chat/completions", "Create a chat completion", "ChatCompletionRequest", True),
    ("post", "/v1/completions", "Create a text completion", "CompletionRequest", True),
    ("post", "/v1/embeddings", "Create embeddings", "EmbeddingRequest", False),
    ("get", "/v1/chat/completions", "List stored chat completions", None, False),
    ("get", "/v1/chat/completions/{completion_id}", "Get a stored chat completion", None, False),
    ("post", "/v1/chat/completions/{completion_id}", "Update its metadata", None, False),
    ("delete", "/v1/chat/completions/{completion_id}", "Delete a stored completion", None, False),
    (
        "get",
        "/v1/chat/completions/{completion_id}/messages",
        "List a stored completion's input messages",
        None,
        False,
    ),
    ("get", "/v1/models", "List models", None, False),
    ("get", "/v1/models/{model_id}", "Get a model (ids contain '/')", None, False),
    ("get", "/v1/providers", "List providers", None, False),
    ("get", "/v1/providers/{provider_id}", "Get a provider", None, False),
    ("get", "/v1/health", "Health", None, False),
    ("get", "/v1/version", "Version", None, False),
    ("get", "/metrics", "Prometheus metrics", None, False),
]


def _operation(summary: str, schema: str | None, streams: bool, path: str) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _OBJ}}
    if streams:
        content["text/event-stream"] = {"schema": _STR}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": content},
            "400": {"description": "Invalid request", **error},
            "404": {"description": "Unknown model or id", **error},
            "502": {"description": "The provider failed", **error},
        },
    }
    if schema:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": _STR} for p in params
        ]
    return op


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, summary, schema, streams in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(summary, schema, streams, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard", "version": __version__},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def routes() -> list[Route]:
    document = build_document()

    async def openapi(request: Request) -> Response:
        return json_response(document)

    return [Route("/openapi.json", openapi, methods=["GET"])]
