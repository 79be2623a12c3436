"""API keys. When the config lists any, every request under ``/v1`` but the health check
must carry one as ``Authorization: Bearer <key>``: the header the openai SDK sends for
its ``api_key``. ``/metrics`` and ``/openapi.json`` stay open, as vLLM leaves its own
(scrapers and documentation tools rarely hold a key); keep them behind a firewall."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import Scope

from switchyard.errors import AuthenticationError

# Probed by load balancers and orchestrators, which hold no key.
OPEN_PATHS = frozenset({"/v1/health"})
_BEARER = b"bearer "


class KeyCheck:
    """Says why a request is refused, or None when it may pass."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def refusal(self, scope: Scope) -> AuthenticationError | None:
        path: str = scope["path"]
        if not path.startswith("/v1") or path in OPEN_PATHS:
            return None
        given = _bearer_token(scope["headers"])
        if given is None:
            return _refused(
                "No API key given. Send one as 'Authorization: Bearer <key>' (the openai "
                "SDK's api_key); the server's keys are server.api_keys in its config.",
                code=None,
            )
        # Every key compared in full, in constant time: how much of a guess was right
        # shows in no response time.
        if not any([hmac.compare_digest(given, key) for key in self._keys]):
            return _refused(
                "Incorrect API key given. Send one of the keys in server.api_keys of the "
                "server's config as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        return None


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            if value[: len(_BEARER)].lower() == _BEARER:
                return value[len(_BEARER) :].strip()
            return None
    return None


def _refused(message: str, code: str | None) -> AuthenticationError:
    error = AuthenticationError(message, code=code)
    error.headers["WWW-Authenticate"] = "Bearer"
    return error
