"""API keys. When the config lists any, every request but the health check, ``/metrics``
and ``/openapi.json`` must carry one as ``Authorization: Bearer <key>``: the header the
openai SDK sends for its ``api_key``. The open ones are open as vLLM leaves its own;
``/metrics`` holds provider ids and counters, no secret: keep it behind a firewall."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import Scope

from switchyard.errors import AuthenticationError

# Open without a key: probes, scrapers and documentation tools hold none. Every other
# path needs one, so that a route added later is closed until it is listed here.
OPEN_PATHS = frozenset({"/v1/health", "/metrics", "/openapi.json"})
# Where an admitted request's key id waits for its handler (the store keeps it as the
# completion's caller).
CALLER = "switchyard.caller"
_BEARER = b"bearer "


def key_id(key: str) -> str:
    """The id a key is known by in the store and the API: stable, and not the key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyCheck:
    """Says why a request is refused, or None when it may pass."""

    __slots__ = ("_ids", "_keys")

    def __init__(self, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        self._keys = tuple(key.encode() for key in keys)
        self._ids = tuple(key_id(key) for key in keys)

    def refusal(self, scope: Scope) -> AuthenticationError | None:
        """Why the request is refused; None if it may pass, with the id of its key, if
        it needed one, in ``scope[CALLER]``."""
        if _route_path(scope) in OPEN_PATHS:
            return None
        given = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(given) > 1:  # which one counts would depend on who reads it: neither does
            return _refused("Send one Authorization header, not several.", code=None)
        token = _bearer_token(given[0]) if given else None
        if token is None:
            return _refused(
                "No API key given. Send one as 'Authorization: Bearer <key>' (the openai "
                "SDK's api_key); the server's keys are server.api_keys in its config.",
                code=None,
            )
        # Every key compared in full, in constant time: how much of a guess was right
        # shows in no response time.
        matches = [hmac.compare_digest(token, key) for key in self._keys]
        if True not in matches:
            return _refused(
                "Incorrect API key given. Send one of the keys in server.api_keys of the "
                "server's config as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        scope[CALLER] = self._ids[matches.index(True)]
        return None


def _route_path(scope: Scope) -> str:
    """The path the routes see: uvicorn's ``--root-path`` prefixes ``path`` with it,
    and Starlette takes it off again before matching."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer_token(value: bytes) -> bytes | None:
    if value[: len(_BEARER)].lower() != _BEARER:
        return None  # another scheme (Basic), or none
    return value[len(_BEARER) :].strip() or None


def _refused(message: str, code: str | None) -> AuthenticationError:
    error = AuthenticationError(message, code=code)
    error.headers["WWW-Authenticate"] = "Bearer"
    return error
