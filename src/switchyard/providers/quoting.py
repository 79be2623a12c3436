"""What a provider said, made fit to quote in a client's error message and in the log.

A provider's error text is worth passing on ("maximum context length is 8192 tokens"),
but not all of it: a provider may echo the key it refused (Switchyard's own, from the
config), and a proxy in front of it answers with an HTML page that can name internal
hosts. So a quote drops the configured secrets, stands in for an HTML page (which goes
to the log), and is cut short.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from switchyard.hidden import configured_secrets, hide

log = logging.getLogger(__name__)

QUOTE_MAX = 500
LOGGED_MAX = 2000
# What is read of an error body: enough to find a secret that a quote's cut would
# otherwise halve, not all of a 512 MiB answer.
READ_MAX = 64 * 1024


class Quoter:
    __slots__ = ("_provider_id", "_secrets")

    def __init__(self, provider_id: str, api_key: str | None, base_url: str) -> None:
        self._provider_id = provider_id
        self._secrets = configured_secrets(api_key, base_url)

    def __call__(self, text: str, limit: int = QUOTE_MAX) -> str:
        text = hide(text, self._secrets)
        if text.lstrip()[:1] == "<":
            page = text[:LOGGED_MAX]
            log.warning("provider %s answered with an HTML page: %s", self._provider_id, page)
            return "an HTML page (in Switchyard's log), not an API error"
        return text[:limit]


def error_fields(raw: bytes) -> tuple[str, str | None, str | None, str | None]:
    """Pull message, type, param and code out of whatever error body a provider sent
    (unquoted: pass the message through a Quoter)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw[:READ_MAX].decode("utf-8", "replace").strip()
        return (text or "no details given"), None, None, None
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]  # Gemini's OpenAI API: [{"error": {...}}]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, str):
        return error, None, None, None
    if not isinstance(error, dict):
        return str(error), None, None, None
    message = error.get("message") or error.get("detail") or _as_text(error, raw)
    param, code, kind = error.get("param"), error.get("code"), error.get("type")
    return (
        str(message),
        kind if isinstance(kind, str) else None,
        param if isinstance(param, str) else None,
        code if isinstance(code, str) else None,
    )


def _as_text(error: Any, raw: bytes) -> str:
    """An error object with no message, as JSON; as the provider sent it if orjson cannot
    write it (it reads 1,024 levels of nesting and writes 254)."""
    try:
        return orjson.dumps(error).decode()
    except orjson.JSONEncodeError:
        return raw[:READ_MAX].decode("utf-8", "replace").strip()
