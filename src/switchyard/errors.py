"""The exception tree, and its one mapping to OpenAI's error JSON.

Every error a client can see is a :class:`SwitchyardError`. Each class fixes the
HTTP status and OpenAI error ``type``; instances carry the message, the offending
``param`` and an optional machine-readable ``code``::

    SwitchyardError                     500 server_error
    ├── ConfigError                     (start-up only, never sent to a client)
    ├── InvalidRequestError             400 invalid_request_error
    │   ├── UnsupportedParameterError   400  a parameter the provider refuses
    │   └── WrongModelTypeError         400  e.g. an embedding model used for chat
    ├── AuthenticationError             401 invalid_request_error (as OpenAI types it)
    ├── NotFoundError                   404 invalid_request_error (as OpenAI types it)
    │   ├── ModelNotFoundError          404  code=model_not_found
    │   └── ReplayMissError             404  code=replay_miss: replay mode, no recording
    ├── PayloadTooLargeError            413 invalid_request_error
    ├── RateLimitError                  429 rate_limit_error
    └── UpstreamError                   502 upstream_error   the provider answered badly
        ├── UpstreamStatusError         the provider's own status (4xx passed through)
        ├── UpstreamUnavailableError    503  connection refused / reset
        └── UpstreamTimeoutError        504  no answer in time

The server maps these once (``to_json``, in server/errors.py); nothing else builds error JSON.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class SwitchyardError(Exception):
    """Base of every error Switchyard raises on purpose."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers: dict[str, str] = {}  # sent with the error, e.g. Retry-After

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class ConfigError(SwitchyardError):
    """The configuration cannot be used; raised at start-up with the file and field."""


class InvalidRequestError(SwitchyardError):
    status = 400
    error_type = "invalid_request_error"


class ClientGoneError(InvalidRequestError):
    """The client left before its answer: nobody reads this error. nginx's 499 (Client
    Closed Request) keeps it apart from the client's mistakes in the log and metrics."""

    status = 499


class UnsupportedParameterError(InvalidRequestError):
    """The provider behind the model refuses a parameter the client sent."""

    def __init__(self, provider_id: str, param: str, detail: str) -> None:
        super().__init__(
            f"Provider '{provider_id}' does not support {detail}. "
            f"Remove '{param}' or choose a model of another provider.",
            param=param,
            code="unsupported_parameter",
        )


class WrongModelTypeError(InvalidRequestError):
    """The model exists but serves another endpoint."""


class AuthenticationError(SwitchyardError):
    status = 401
    # OpenAI's own type for a missing or wrong key (code invalid_api_key for the latter).
    error_type = "invalid_request_error"


class PermissionDeniedError(SwitchyardError):
    status = 403
    error_type = "permission_error"


class NotFoundError(SwitchyardError):
    status = 404
    # OpenAI's own type for an unknown model, id or URL; the status and code tell them apart.
    error_type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    error_type = "invalid_request_error"

    def __init__(self, model: str, hint: str = "") -> None:
        super().__init__(
            f"The model '{model}' does not exist or is not served here{hint}. "
            "List the available models with GET /v1/models; "
            "ids have the form 'provider_id/provider_model_id'.",
            param="model",
            code="model_not_found",
        )


class ReplayMissError(NotFoundError):
    """Replay mode found no recorded interaction for an upstream request.

    404 rather than 400: the client's request may be perfectly valid; what is missing is
    its recording. (Neither status makes the openai SDK retry, unlike a 5xx.) The message
    names the cassette, the closest recorded request and the fields that differ; the same
    facts are kept as attributes for tests.
    """

    def __init__(
        self,
        message: str,
        *,
        provider_id: str,
        cassette: str,
        closest: str | None = None,
        differences: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, code="replay_miss")
        self.provider_id = provider_id
        self.cassette = cassette
        self.closest = closest
        self.differences = differences


class PayloadTooLargeError(SwitchyardError):
    status = 413
    error_type = "invalid_request_error"


class RateLimitError(SwitchyardError):
    status = 429
    error_type = "rate_limit_error"


class UpstreamError(SwitchyardError):
    """The provider failed; ``provider_id`` says which."""

    status = 502
    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider_id: str = "",
        param: str | None = None,
        code: str | None = None,
        unsent: bool = False,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.provider_id = provider_id
        # The provider cannot have seen the request (no connection was made): the only
        # failure that is safe to send again (upstream/retry.py).
        self.unsent = unsent


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status; client errors keep their status."""

    def __init__(
        self,
        message: str,
        *,
        provider_id: str,
        upstream_status: int,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, provider_id=provider_id, param=param, code=code)
        self.upstream_status = upstream_status
        self.status = _client_status(upstream_status)  # type: ignore[misc]
        if error_type and self.status < 500:
            self.error_type = error_type  # type: ignore[misc]
        elif self.status == 429:
            self.error_type = "rate_limit_error"  # type: ignore[misc]
        elif self.status < 500:  # the client's to fix (a 413 with no type of its own)
            self.error_type = "invalid_request_error"  # type: ignore[misc]


class UpstreamUnavailableError(UpstreamError):
    status = 503
    error_type = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    error_type = "upstream_timeout"


def no_client_retry(error: SwitchyardError) -> None:
    """Ask the client's SDK not to retry ``error``: the openai SDKs obey this header
    before their own rules (which retry 429 and every 5xx)."""
    error.headers["x-should-retry"] = "false"


# Client-side mistakes the provider caught are the client's to fix, so they keep
# their status. A provider rejecting *our* credentials (401/403) is not: the caller
# cannot change it, so it becomes a 502 that tells the operator what to fix.
_PASSED_THROUGH = frozenset({400, 404, 409, 413, 422, 429})


def _client_status(upstream_status: int) -> int:
    if upstream_status in _PASSED_THROUGH:
        return 400 if upstream_status == 422 else upstream_status
    return 502
