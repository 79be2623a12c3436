"""Cassettes: readable JSON files of recorded provider interactions (the format).

One file per cassette, ``<directory>/<name>.json``::

    {"version": 1, "name": "default", "ignore_fields": ["user"],
     "interactions": [
       {"provider": "together", "recorded_at": "2025-10-03T09:12:44Z",
        "request":  {"method": "POST", "path": "/v1/chat/completions",
                     "headers": {"content-type": "application/json"}, "body": {...}},
        "response": {"status": 200, "headers": {"content-type": "text/event-stream"},
                     "events": [{"delay_ms": 212.5, "data": {...}},
                                {"delay_ms": 0.4, "data": "[DONE]"}]}}]}

A response holds ``body`` (JSON), ``text`` (anything else) or ``events`` (a stream). An
event's ``data`` is the parsed JSON object when re-serialising it with orjson gives back
the exact bytes the provider sent, otherwise the raw string, so a replayed stream is
byte-identical in its events. Request bodies are stored with sorted keys (canonical), and
secrets never reach a file: see :mod:`switchyard.recording.scrub`. Files are read and
written (atomically, safely from several processes) by :mod:`switchyard.recording.files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "FORMAT_VERSION",
    "Cassette",
    "Interaction",
    "RecordedRequest",
    "RecordedResponse",
    "StreamEvent",
    "now_iso",
]

FORMAT_VERSION = 1


@dataclass(slots=True)
class StreamEvent:
    """One server-sent event: its data (JSON value or raw text) and its delay since the
    previous event (for the first: since the request was sent), in milliseconds."""

    data: Any
    delay_ms: float = 0.0

    @classmethod
    def from_raw(cls, raw: bytes, delay_ms: float = 0.0) -> StreamEvent:
        try:
            parsed = orjson.loads(raw)
            # Only objects and arrays are stored parsed: a JSON string would read back as
            # raw text. Anything orjson would not write back byte for byte stays raw.
            exact = isinstance(parsed, (dict, list)) and orjson.dumps(parsed) == raw
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            exact = False
        # Not UTF-8 (which SSE is by definition): replaced, as JSON cannot hold it.
        data = parsed if exact else raw.decode("utf-8", "replace")
        return cls(data=data, delay_ms=round(delay_ms, 1))

    def raw(self) -> bytes:
        """The exact bytes of the event's data field."""
        if isinstance(self.data, str):
            return self.data.encode()
        return orjson.dumps(self.data)

    def to_json(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_ms, "data": self.data}


@dataclass(slots=True)
class RecordedRequest:
    """What was asked: no host (it differs between recording and replay), no secrets."""

    method: str
    path: str
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.query:
            out["query"] = self.query
        out["headers"] = self.headers
        if self.body is not None:
            out["body"] = self.body
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecordedRequest:
        return cls(
            method=str(raw["method"]).upper(),
            path=str(raw["path"]),
            body=raw.get("body"),
            query=dict(raw.get("query") or {}),
            headers=dict(raw.get("headers") or {}),
        )


@dataclass(slots=True)
class RecordedResponse:
    """What the provider answered: exactly one of ``body``, ``text`` or ``events``."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    text: str | None = None
    events: list[StreamEvent] | None = None

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "headers": self.headers}
        if self.events is not None:
            out["events"] = [event.to_json() for event in self.events]
        elif self.text is not None:
            out["text"] = self.text
        else:
            out["body"] = self.body
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecordedResponse:
        events = raw.get("events")
        return cls(
            status=int(raw["status"]),
            headers=dict(raw.get("headers") or {}),
            body=raw.get("body"),
            text=raw.get("text"),
            events=None
            if events is None
            else [StreamEvent(e["data"], float(e.get("delay_ms", 0.0))) for e in events],
        )


@dataclass(slots=True)
class Interaction:
    """One request to one provider and its answer."""

    provider: str
    request: RecordedRequest
    response: RecordedResponse
    recorded_at: str | None = None
    source: str | None = None
    """Where an imported interaction came from (e.g. a Llama Stack file)."""
    test_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.provider,
            "recorded_at": self.recorded_at,
            "request": self.request.to_json(),
            "response": self.response.to_json(),
        }
        if self.source is not None:
            out["source"] = self.source
        if self.test_id is not None:
            out["test_id"] = self.test_id
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Interaction:
        return cls(
            provider=str(raw["provider"]),
            request=RecordedRequest.from_json(raw["request"]),
            response=RecordedResponse.from_json(raw["response"]),
            recorded_at=raw.get("recorded_at"),
            source=raw.get("source"),
            test_id=raw.get("test_id"),
        )


@dataclass(slots=True)
class Cassette:
    """A named list of interactions, plus the request fields its matching ignores."""

    name: str
    interactions: list[Interaction] = field(default_factory=list)
    ignore_fields: list[str] = field(default_factory=list)
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "name": self.name,
            "ignore_fields": self.ignore_fields,
            "interactions": [interaction.to_json() for interaction in self.interactions],
        }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
