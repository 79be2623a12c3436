"""What of a request or response may be written to a cassette.

Secrets never are: credential headers (``Authorization``, ``api-key``, ``x-api-key`` and
anything else that looks like a key, token or cookie) are dropped, and so are query
parameters with such names (Gemini's ``?key=``, Azure SAS ``sig``). Headers that only add
noise to diffs (user agent, lengths, connection handling) are dropped too. Of a response
only the headers that change how a client reads it are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

__all__ = ["is_secret_name", "request_headers", "request_query", "response_headers"]

_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
    }
)
# Parts of a name that mark it as a credential, for headers and query parameters alike.
_SECRET_PARTS = ("key", "token", "secret", "password", "auth", "signature", "credential")
_SECRET_QUERY = frozenset({"sig", "code"})
_NOISE_HEADERS = frozenset(
    {
        "user-agent",
        "content-length",
        "host",
        "connection",
        "accept-encoding",
        "transfer-encoding",
    }
)
_RESPONSE_HEADERS = frozenset({"content-type", "retry-after", "retry-after-ms"})


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter name may carry a credential."""
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(part in lowered for part in _SECRET_PARTS)


def request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping, lower-cased, sorted, without secrets."""
    kept = {
        name.lower(): value
        for name, value in headers.items()
        if not is_secret_name(name) and name.lower() not in _NOISE_HEADERS
    }
    return dict(sorted(kept.items()))


def request_query(query: str) -> dict[str, str]:
    """The query parameters without credentials (the last value of a repeated name)."""
    return {
        name: value
        for name, value in parse_qsl(query, keep_blank_values=True)
        if not is_secret_name(name) and name.lower() not in _SECRET_QUERY
    }


def response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Only what changes how a client reads the answer: its type and retry hints."""
    return {
        name.lower(): value for name, value in headers.items() if name.lower() in _RESPONSE_HEADERS
    }
