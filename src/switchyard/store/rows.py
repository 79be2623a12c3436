"""From a finished call to a row, and from a row to the objects the API returns.

A stored completion is what the client got (our id, the model id it sent), plus
``metadata`` and ``input_messages`` (as Llama Stack returns them) and a ``switchyard``
object with what only we know: the provider, the provider's own completion id,
timings, and whether it was streamed. The caller's identity is stored, not shown.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row

from switchyard.ids import new_completion_id
from switchyard.sink import StoredCall
from switchyard.store.assemble import assemble

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# Kept in their own columns, so not repeated in the stored request.
_REQUEST_OWN_COLUMNS = frozenset({"messages", "metadata", "model"})


def row_for(call: StoredCall) -> JSON:
    """The ``chat_completions`` row for ``call`` (streams are assembled here)."""
    completion = call.completion if call.completion is not None else assemble(call.chunks or [])
    if not completion.get("id"):
        completion["id"] = new_completion_id()  # a stream that ended before its first chunk
    request = call.request
    messages = request.get("messages")
    metadata = request.get("metadata")
    return {
        "id": str(completion["id"]),
        "created_us": int(call.started * 1_000_000),
        "finished_us": int(call.finished * 1_000_000),
        "model": str(request.get("model") or completion.get("model") or ""),
        "provider_id": call.provider_id,
        "provider_completion_id": call.provider_completion_id,
        "caller": call.caller,
        "streamed": call.completion is None,
        "completion": completion,
        "input_messages": messages if isinstance(messages, list) else [],
        "request": {k: v for k, v in request.items() if k not in _REQUEST_OWN_COLUMNS},
        "metadata": metadata if isinstance(metadata, dict) else None,
    }


def completion_object(row: Row[Any]) -> JSON:
    """GET /v1/chat/completions/{id}, and each item of the listing."""
    return {
        **row.completion,
        "metadata": row.metadata or {},
        "input_messages": row.input_messages,
        "switchyard": {
            "provider_id": row.provider_id,
            "provider_completion_id": row.provider_completion_id,
            "started": row.created_us / 1_000_000,
            "finished": row.finished_us / 1_000_000,
            "streamed": row.streamed,
        },
    }


def message_id(completion_id: str, index: int) -> str:
    return f"{completion_id}-{index}"


def message_object(completion_id: str, index: int, message: Any) -> JSON:
    """One input message as OpenAI lists it: with an id, and content parts apart."""
    item: JSON = dict(message) if isinstance(message, dict) else {"content": message}
    item["id"] = message_id(completion_id, index)
    content = item.get("content")
    if isinstance(content, list):
        item["content_parts"] = content
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        item["content"] = "".join(t for t in texts if isinstance(t, str)) or None
    else:
        item["content_parts"] = None
    return item
