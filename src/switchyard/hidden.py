"""The config's secrets, found and hidden in what a provider sends back.

A provider may echo the key it refused (``Invalid API key: sk-...``): such text must
reach neither a client, nor the log, nor a cassette that users commit. The secrets are
the provider's ``api_key`` and the password of its ``base_url``.
"""

from __future__ import annotations

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


def hide_bytes(raw: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        raw = raw.replace(secret.encode(), HIDDEN.encode())
    return raw
