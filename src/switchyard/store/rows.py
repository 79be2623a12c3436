"""From a stored row to the objects the API returns (``record`` makes the rows).

A stream mostly of text is stored as its chunks, as the tap keeps them
(``server/stream.py``), and assembled here; other streams, and older rows, hold it
assembled.

Each completion carries a ``switchyard`` object with what only we know: the provider,
the provider's own completion id, timings, whether it was streamed, and the caller: the
id of the API key it came with (``server.auth.key_id``), None when no key is asked for.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row

from switchyard.store.assemble import assemble

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def stored_completion(completion: JSON | list[Any], row_id: str) -> JSON:
    """The completion a row holds. A stream stored as its chunks (store/record.py) is
    assembled here, on the rare read, rather than by the writer on every call; the
    chunks carry our id, but an empty stream has none, so the row's is given."""
    if isinstance(completion, list):
        return {**assemble(completion), "id": row_id}
    return completion


def completion_object(row: Row[Any]) -> JSON:
    """GET /v1/chat/completions/{id}, and each item of the listing."""
    return {
        **stored_completion(row.completion, row.id),
        "metadata": row.metadata or {},
        "input_messages": row.input_messages,
        "switchyard": {
            "provider_id": row.provider_id,
            "provider_completion_id": row.provider_completion_id,
            "started": row.created_us / 1_000_000,
            "finished": row.finished_us / 1_000_000,
            "streamed": row.streamed,
            "caller": row.caller,
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
