"""Parse Llama Stack's recorded provider traffic into neutral, typed records.

Llama Stack's integration-test recorder stores one request/response pair per JSON file::

    {"request":  {"method", "url", "headers", "body", "endpoint", "model"},
     "response": {"body": <wrapper | [wrapper, ...] | null>, "is_streaming": bool,
                  "is_exception"?: bool, "exception_data"?: {...}},
     "test_id"?: str}

where a wrapper is ``{"__type__": "<openai SDK class>", "__data__": <model_dump()>}``.
:func:`load_exchange` turns one such file into a :class:`RecordedExchange` holding what the
provider put on the wire, so tests can replay it over HTTP without knowing the recorder.
Both the old ``recordings/responses/<hash>.json`` layout and the newer
``<area>/recordings/<sha256>.json`` one share this format; nothing here depends on the file
name except the ``models-`` prefix of model lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = [
    "ENDPOINTS",
    "RecordedExchange",
    "load_dir",
    "load_exchange",
    "normalise_path",
]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
MODELS = "/v1/models"
ENDPOINTS = frozenset({CHAT, COMPLETIONS, EMBEDDINGS, MODELS})

# First path segment of every OpenAI endpoint we replay; whatever precedes it in a URL is a
# base-URL prefix (``/inference/v1``, ``/openai/v1``, ``/serving-endpoints``, ...).
_ENDPOINT_HEADS = frozenset({"chat", "completions", "embeddings", "models"})


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One recorded call to a provider, as it was on the wire."""

    provider: str
    """Folder the file sits in, e.g. ``"together"``."""
    source: str
    """Path of the file it came from."""
    method: str
    """``"POST"``, or ``"GET"`` for model lists (recorded as POST by the recorder)."""
    endpoint: str
    """One of :data:`ENDPOINTS`."""
    url: str
    """The URL as recorded (with the recorder's doubled ``/v1/v1``)."""
    body: dict[str, Any] | None
    """The JSON request body; ``None`` for model lists."""
    status: int
    """200, or the provider's status for a recorded error."""
    response: Any
    """The JSON response body as sent by the provider; ``None`` for streams."""
    events: list[Any] | None
    """For streams, the decoded ``data:`` payloads in order, without ``[DONE]``."""
    test_id: str | None
    """The test that recorded it, when the recorder kept it."""

    @property
    def is_stream(self) -> bool:
        """Whether the provider answered with server-sent events."""
        return self.events is not None


def normalise_path(url_or_path: str) -> str:
    """Map a recorded URL (or a request path) to the endpoint path it addresses.

    Drops scheme, host, query and any provider prefix, and collapses the recorder's doubled
    ``/v1/v1``: ``https://api.fireworks.ai/inference/v1/v1/chat/completions`` and
    ``__databricks__/serving-endpoints/v1/embeddings`` become ``/v1/chat/completions`` and
    ``/v1/embeddings``.
    """
    parts = urlsplit(url_or_path)
    segments = [segment for segment in parts.path.split("/") if segment]
    start = _endpoint_start(segments)
    if start is None:
        return "/" + "/".join(segments)
    return "/v1/" + "/".join(segments[start:])


def _endpoint_start(segments: list[str]) -> int | None:
    """Index of the first segment of the endpoint proper, or ``None`` if there is no ``/v1``
    and no known endpoint in the path (then it is returned as it is)."""
    for index, segment in enumerate(segments):
        if segment in _ENDPOINT_HEADS:
            return index
    # An endpoint we do not know: keep what follows the (possibly doubled) first /v1.
    if "v1" not in segments:
        return None
    index = segments.index("v1")
    while index < len(segments) and segments[index] == "v1":
        index += 1
    return index


def load_exchange(path: Path, provider: str | None = None) -> RecordedExchange:
    """Read one recorder file. ``provider`` defaults to the name of its folder.

    Raises :class:`ValueError`, naming the file, for anything that is not a recording.
    """
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return _parse(document, path, provider or path.parent.name)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a Llama Stack recording ({exc!r})") from exc


def load_dir(root: Path) -> list[RecordedExchange]:
    """Load every recording under ``root``, sorted by path.

    ``root`` is either one provider's folder (``.../llama-stack/ollama``) or the folder of
    provider folders (``.../llama-stack``).
    """
    files = sorted(root.glob("*.json"))
    if not files:
        files = sorted(root.glob("*/*.json"))
    return [load_exchange(file) for file in files]


def _parse(document: Any, path: Path, provider: str) -> RecordedExchange:
    request = _mapping(document, "request")
    response = _mapping(document, "response")
    url = str(request.get("url", ""))
    endpoint = _endpoint(request, url, path)
    body = None if endpoint == MODELS else _mapping(request, "body")
    status, payload, events = _response(response, endpoint)
    test_id = document.get("test_id")
    return RecordedExchange(
        provider=provider,
        source=str(path),
        method="GET" if endpoint == MODELS else str(request.get("method", "POST")).upper(),
        endpoint=endpoint,
        url=url,
        body=body,
        status=status,
        response=payload,
        events=events,
        test_id=test_id if isinstance(test_id, str) else None,
    )


def _endpoint(request: dict[str, Any], url: str, path: Path) -> str:
    if path.name.startswith("models-"):
        return MODELS
    endpoint = normalise_path(str(request.get("endpoint") or url))
    # The old recorder filed some Ollama chat calls under /v1/completions (URL included);
    # a body with messages can only have been a chat completion.
    body = request.get("body")
    if endpoint == COMPLETIONS and isinstance(body, dict) and "messages" in body:
        endpoint = CHAT
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unsupported endpoint {endpoint!r}")
    return endpoint


def _response(response: dict[str, Any], endpoint: str) -> tuple[int, Any, list[Any] | None]:
    """(status, JSON body, stream events) of the recorded answer."""
    if response.get("is_exception"):
        return _exception(_mapping(response, "exception_data"))
    body = _unwrap(response["body"])
    if response.get("is_streaming"):
        if not isinstance(body, list):
            raise TypeError("streamed response body is not a list of chunks")
        return 200, None, body
    if endpoint == MODELS:
        if not isinstance(body, list):
            raise TypeError("model list body is not a list")
        return 200, {"object": "list", "data": body}, None
    if not isinstance(body, dict):
        raise TypeError("response body is not a JSON object")
    return 200, body, None


def _exception(data: dict[str, Any]) -> tuple[int, Any, None]:
    status = data["status_code"]
    if not isinstance(status, int):
        raise TypeError("exception_data.status_code is not an integer")
    error = data.get("body")
    if not isinstance(error, dict):
        # No structured body was captured: rebuild OpenAI's error shape from what was.
        error = {
            "message": data.get("message"),
            "type": data.get("type"),
            "param": None,
            "code": None,
        }
    # OpenAI-compatible providers wrap the error object; the SDK recorded it unwrapped.
    if "error" not in error:
        error = {"error": error}
    return status, error, None


def _unwrap(value: Any) -> Any:
    """Replace every ``{"__type__", "__data__"}`` wrapper with its data, at any depth."""
    if isinstance(value, dict):
        if "__type__" in value and "__data__" in value:
            return _unwrap(value["__data__"])
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def _mapping(container: Any, key: str) -> dict[str, Any]:
    value = container[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} is not a JSON object")
    return value
