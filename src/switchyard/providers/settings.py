"""A provider's base URL checked at start, and its settings as ``/v1/providers`` shows
them (secrets masked)."""

from __future__ import annotations

import re

from switchyard.errors import ConfigError
from switchyard.upstream import reachable_url
from switchyard.upstream.base import logged_url

MASK = "********"
_SECRET_WORDS = ("key", "token", "secret", "password", "auth")


def secret_name(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def checked_url(provider_id: str, url: str) -> str:
    """``url``, if it is one a request can go to; a ConfigError at start otherwise, not
    a 503 on every request."""
    if not reachable_url(url):
        raise ConfigError(
            f"provider '{provider_id}': base_url {logged_url(url)!r} is not an http(s) URL "
            "with a host; write it as http://host:port/v1 or https://host/v1"
        )
    if any(c.isspace() for c in url):
        # From ${env.X} with a stray space: "/v1 /chat/completions" would reach the
        # provider, whose 400 would read as the client's fault.
        raise ConfigError(
            f"provider '{provider_id}': base_url {logged_url(url)!r} holds a space or a "
            "line break; remove it (from the file or the variable it came from)"
        )
    if "?" in url or "#" in url:
        # Paths are appended to base_url: /chat/completions would land inside the query.
        # Named without the query, which may hold a key (?api-key=...).
        shown = re.split(r"[?#]", logged_url(url), maxsplit=1)[0]
        raise ConfigError(
            f"provider '{provider_id}': base_url {shown!r}... has a query or a fragment, "
            "which the API's paths cannot follow; give it as scheme://host/path"
        )
    return url


def without_userinfo(url: str) -> str:
    # logged_url finds credentials that urlsplit misses (a password holding "/" or "?");
    # the query goes too, since some providers take a key there.
    return logged_url(url).split("?", 1)[0]
