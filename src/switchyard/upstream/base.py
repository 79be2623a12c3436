"""What every transport speaks: the request, the response, and the failures.

Shaped like httpx's transports: a :class:`Transport` has one method, ``send``, and a
wrapper transport (recording, fault injection, retries) adds behaviour around another
instead of patching anything.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.errors import (
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    no_client_retry,
)
from switchyard.upstream.proxies import ProxyError

log = logging.getLogger("switchyard.upstream")


@dataclass(slots=True)
class UpstreamRequest:
    """One call to a provider. ``json`` is the body as an object (for matching and
    recording); ``content`` the exact bytes sent."""

    provider_id: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    stream: bool = False


class UpstreamResponse(Protocol):
    """A provider's answer. ``headers`` has lower-case names."""

    status: int
    headers: Mapping[str, str]

    @property
    def ends_at_close(self) -> bool:
        """The body ends only when the connection closes (no length, not chunked):
        where it stops, a cut cannot be told from the end."""

    async def read(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def ends_at_close(headers: Mapping[str, str]) -> bool:
    """Whether an answer with these headers has neither a length nor chunked coding."""
    coding = headers.get("transfer-encoding", "").lower()  # names are case-insensitive
    return "content-length" not in headers and "chunked" not in coding


class BadAnswer(ConnectionError):
    """The provider answered, but not with a usable HTTP answer (malformed, or too
    large): a 502, not the 503 of a provider that could not be reached."""


class ConnectFailed(Exception):
    """Connecting to the provider (or its proxy) failed: it never saw the request."""

    def __init__(self, cause: OSError | TimeoutError) -> None:
        super().__init__(cause)
        self.cause = cause


def network_error(
    request: UpstreamRequest, err: BaseException, *, unsent: bool = False
) -> UpstreamError:
    """No usable answer: a timeout (504), an unreachable provider (503) or a broken
    answer (502). ``unsent``: the provider cannot have seen the request (so it may be
    sent again)."""
    # The URL goes to the log, not to the client: it may name internal hosts.
    log.warning(
        "%s %s (provider %s) failed: %r",
        request.method,
        logged_url(request.url),
        request.provider_id,
        err,
    )
    where = f"provider '{request.provider_id}'"
    provider_id = request.provider_id
    if isinstance(err, TimeoutError):
        return _timed_out(where, err, provider_id, unsent=unsent)
    if isinstance(err, BadAnswer):
        return UpstreamError(
            f"{where} sent {err}; check that its base_url points at an OpenAI-compatible API",
            provider_id=provider_id,
        )
    if isinstance(err, ProxyError):
        return UpstreamUnavailableError(
            f"{where} cannot be reached: {err.public}", provider_id=provider_id, unsent=unsent
        )
    if isinstance(err, ssl.SSLCertVerificationError):
        # Refused by our own check: no retry, here or by the client, would change it.
        refused = UpstreamUnavailableError(
            f"{where} cannot be reached ({_reason(err)})", provider_id=provider_id
        )
        no_client_retry(refused)
        return refused
    if isinstance(err, OSError) and err.errno in OUT_OF_FILES:
        # Ours, not the provider's: a base_url to check would mislead (limits.py).
        return UpstreamUnavailableError(
            f"Switchyard could not open a connection to {where}: this server has run out "
            f"of file descriptors ({_reason(err)}), too many requests are in flight for "
            "its open-files limit; try again later, and raise the limit (ulimit -n)",
            provider_id=provider_id,
            unsent=unsent,
        )
    return UpstreamUnavailableError(
        f"{where} cannot be reached ({type(err).__name__}: {_reason(err)}); "
        "check that it is running and that its base_url is right",
        provider_id=provider_id,
        unsent=unsent,
    )


# The process's limit (EMFILE) or the system's (ENFILE) on open files.
OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


def _timed_out(
    where: str, err: TimeoutError, provider_id: str, *, unsent: bool
) -> UpstreamTimeoutError:
    if unsent:
        return UpstreamTimeoutError(
            f"{where} did not accept a connection in time; check that its base_url is "
            "right and reachable from here, or raise the provider's connect_timeout",
            provider_id=provider_id,
            unsent=True,
        )
    if err.errno == errno.ETIMEDOUT:  # the kernel's, not ours: pool.PROBE_AFTER_SECONDS
        return UpstreamTimeoutError(
            f"{where} stopped responding: its host no longer acknowledges the connection; "
            "check that it is up and reachable from here",
            provider_id=provider_id,
        )
    return UpstreamTimeoutError(
        f"{where} did not answer in time; try again or raise the provider's timeout",
        provider_id=provider_id,
    )


# OpenSSL's verify codes: a certificate whose issuer is not trusted, and one for
# another name or address (whose message quotes the host, which the log has).
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})
_OTHER_HOST = frozenset({62, 64})


def _refusal(err: ssl.SSLCertVerificationError) -> str:
    if err.verify_code in _UNTRUSTED_ISSUER:
        return (
            f"{err.verify_message}; if a private CA signed it, set the provider's "
            "tls_verify to that CA's certificate file (PEM)"
        )
    if err.verify_code in _OTHER_HOST:
        return "it is not for the host in the provider's base_url"
    return str(err.verify_message or err.reason)


def _reason(err: BaseException) -> str:
    """What went wrong, for the client: without the addresses the OS's messages carry
    (``Connect call failed ('10.0.0.7', 8000)``), which the log has."""
    if isinstance(err, socket.gaierror):
        return str(err.strerror)  # "Name or service not known"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"its TLS certificate was refused: {_refusal(err)}"
    if isinstance(err, ssl.SSLError):
        return f"TLS failed: {err.reason}"
    if isinstance(err, OSError) and isinstance(err.errno, int) and err.errno > 0:
        return os.strerror(err.errno)
    if str(err).startswith("Multiple exceptions"):  # each address failed its own way
        return "none of its host's addresses accepted a connection"
    return str(err)  # our own messages (a dropped connection, a malformed answer)


def logged_url(url: str) -> str:
    """``url`` for a log line or a message: without the password a base_url may carry
    (Basic auth). Everything up to the last "@" goes, since a password may hold "/" or
    "?" that hide it from ``urlsplit``; a path with an "@" loses more than it needs to."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def broken_answer(request: UpstreamRequest, err: BaseException) -> UpstreamError:
    """The answer had started: a timeout is still a timeout, anything else a broken reply."""
    if isinstance(err, TimeoutError):
        return network_error(request, err)
    log.warning(
        "%s %s (provider %s) broke off: %r",
        request.method,
        logged_url(request.url),
        request.provider_id,
        err,
    )
    # A BadAnswer (too large, framing broken) says what it was; no base_url to fix.
    what = (
        f"sent {err}"
        if isinstance(err, BadAnswer)
        else (f"broke off its answer ({type(err).__name__}: {err})")
    )
    return UpstreamError(
        f"provider '{request.provider_id}' {what}", provider_id=request.provider_id
    )
