"""The single HTTP seam between Switchyard and remote providers.

Shaped like httpx's transports: a :class:`Transport` has one method, ``send``, and a
wrapper transport (recording, fault injection, retries) adds behaviour around another
instead of patching anything. :class:`AiohttpTransport` is the real one: one
connection pool per provider, kept alive, with connect and read timeouts, and it turns
network failures into :class:`UpstreamUnavailableError` / :class:`UpstreamTimeoutError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from switchyard.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError

log = logging.getLogger(__name__)


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
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_request", "_response", "headers", "status")

    def __init__(self, request: UpstreamRequest, response: aiohttp.ClientResponse) -> None:
        self._request = request
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _broken(self._request, err) from err
        finally:
            self._response.release()

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _broken(self._request, err) from err
        finally:
            self._response.release()

    async def aclose(self) -> None:
        self._response.release()


def _network_error(
    request: UpstreamRequest, err: BaseException
) -> UpstreamTimeoutError | UpstreamUnavailableError:
    # The URL goes to the log, not to the client: it may name internal hosts.
    log.warning(
        "%s %s (provider %s) failed: %r", request.method, request.url, request.provider_id, err
    )
    where = f"provider '{request.provider_id}'"
    if isinstance(err, (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(
            f"{where} did not answer in time; try again or raise the provider's timeout",
            provider_id=request.provider_id,
        )
    return UpstreamUnavailableError(
        f"{where} cannot be reached ({type(err).__name__}: {err}); "
        "check that it is running and that its base_url is right",
        provider_id=request.provider_id,
    )


def _broken(request: UpstreamRequest, err: BaseException) -> UpstreamError:
    """The answer had started: a timeout is still a timeout, anything else a broken reply."""
    if isinstance(err, (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return _network_error(request, err)
    return UpstreamError(
        f"provider '{request.provider_id}' broke off its answer ({type(err).__name__}: {err})",
        provider_id=request.provider_id,
    )


class AiohttpTransport:
    """The real transport: one aiohttp session (one connection pool) per provider."""

    def __init__(self, *, timeout: float, connect_timeout: float, limit: int = 0) -> None:
        # sock_connect, not connect: aiohttp's ``connect`` also counts the wait for a
        # pooled connection, which would turn a busy pool into false 504s. The pool is
        # unbounded (limit=0) by default: it is the provider's to say how much it takes.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        )
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the running loop of the worker.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
            )
        return self._session

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        session = self._get_session()
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.content,
                headers=request.headers,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise _network_error(request, err) from err
        return _AiohttpResponse(request, response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# Retry policy, as openai-python does it: two retries with exponential backoff between
# 0.5 s and 8 s, honouring the provider's Retry-After / retry-after-ms.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            return None
    return None


class RetryTransport:
    """Retries connection failures and retryable statuses before any body is read."""

    def __init__(self, inner: Transport, *, max_retries: int) -> None:
        self._inner = inner
        self._max_retries = max_retries

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        attempt = 0
        while True:
            try:
                response = await self._inner.send(request)
            except UpstreamUnavailableError:
                if attempt >= self._max_retries:
                    raise
                delay = self._backoff(attempt, None)
            else:
                if response.status not in RETRY_STATUSES or attempt >= self._max_retries:
                    return response
                delay = self._backoff(attempt, _retry_after(response.headers))
                await response.aclose()
            attempt += 1
            log.info(
                "retrying %s %s (provider %s) in %.2fs, attempt %d of %d",
                request.method,
                request.url,
                request.provider_id,
                delay,
                attempt,
                self._max_retries,
            )
            await asyncio.sleep(delay)

    @staticmethod
    def _backoff(attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after <= 60:
            return retry_after
        return float(min(MAX_BACKOFF, INITIAL_BACKOFF * 2**attempt))

    async def aclose(self) -> None:
        await self._inner.aclose()


def default_transport(*, timeout: float, connect_timeout: float, max_retries: int) -> Transport:
    """The live stack: retries around the real network transport."""
    real = AiohttpTransport(timeout=timeout, connect_timeout=connect_timeout)
    return RetryTransport(real, max_retries=max_retries)
