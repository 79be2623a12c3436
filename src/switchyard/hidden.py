"""The config's secrets, found and hidden in what a provider sends back.

A provider may echo the key it refused (``Invalid API key: sk-...``): such text must
reach neither a client, nor the log, nor a cassette that users commit. The secrets are
the provider's ``api_key`` and the password of its ``base_url``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

HIDDEN = "***"
# Shorter "secrets" ("x", a placeholder key) would blank out ordinary words.
_SECRET_MIN = 6


def configured_secrets(api_key: str | None, base_url: str | None) -> tuple[str, ...]:
    """The secrets to hide, the longest first (one may contain another)."""
    secrets = [api_key or ""]
    try:
        password = urlsplit(base_url or "").password
    except ValueError:
        password = None
    if password:
        secrets += [password, unquote(password)]
    found = {s for s in secrets if len(s) >= _SECRET_MIN}
    return tuple(sorted(found, key=len, reverse=True))


def hide(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    return text


def hide_json(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with the secrets hidden in its strings (not in its numbers: a password
    of digits would otherwise rewrite a vector)."""
    if isinstance(value, str):
        return hide(value, secrets)
    if isinstance(value, dict):
        return {key: hide_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_json(item, secrets) for item in value]
    return value
