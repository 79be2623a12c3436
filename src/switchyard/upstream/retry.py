"""Retries around another transport, as openai-python does them."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import Mapping
from contextvars import ContextVar

from switchyard.errors import UpstreamError, no_client_retry
from switchyard.upstream.base import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    log,
    logged_url,
)

# Retry policy, as openai-python does it: two retries with exponential backoff between
# 0.5 s and 8 s, honouring the provider's Retry-After / retry-after-ms.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
# When the last retry was sent (time.monotonic()), in the request's context: a recorder
# around the retries times a stream from it, not from the first attempt, so that a
# realtime replay does not wait out the back-off again before the first event.
RETRY_SENT: ContextVar[float] = ContextVar("switchyard_retry_sent", default=0.0)


def _retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait the provider asks for, in seconds: retry-after-ms, else Retry-After as
    seconds or as an HTTP date. None if it asks none, or nothing readable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        with contextlib.suppress(ValueError):
            return float(ms) / 1000  # unreadable: Retry-After may still say
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


def backoff(attempt: int, retry_after: float | None) -> float:
    """The wait before retry ``attempt`` + 1: the provider's, when it asks a positive
    one of at most a minute; else exponential, cut by up to a quarter at random so that
    clients refused together do not all come back together (openai-python's rule)."""
    if retry_after is not None and 0 < retry_after <= 60:
        return retry_after
    full: float = min(MAX_BACKOFF, INITIAL_BACKOFF * 2.0**attempt)
    return full * (1 - 0.25 * random.random())


class RetryTransport:
    """Retries failures to reach the provider and retryable statuses, before any body is
    read; never a request the provider may have received without answering."""

    def __init__(self, inner: Transport, *, max_retries: int) -> None:
        self._inner = inner
        self._max_retries = max_retries

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        attempt = 0
        while True:
            if attempt:
                RETRY_SENT.set(time.monotonic())
            try:
                response = await self._inner.send(request)
            except UpstreamError as err:
                # Only what the provider never saw: a request it dropped mid-way may
                # already be generating (and billed); sending it again would do it twice.
                if not err.unsent or attempt >= self._max_retries:
                    if err.unsent and attempt:
                        no_client_retry(err)  # retried here already
                    raise
                delay = backoff(attempt, None)
            else:
                if response.status not in RETRY_STATUSES or attempt >= self._max_retries:
                    return response
                delay = backoff(attempt, _retry_after(response.headers))
                await response.aclose()
            attempt += 1
            log.info(
                "retrying %s %s (provider %s) in %.2fs, attempt %d of %d",
                request.method,
                logged_url(request.url),
                request.provider_id,
                delay,
                attempt,
                self._max_retries,
            )
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self._inner.aclose()
