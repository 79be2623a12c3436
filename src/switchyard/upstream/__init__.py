"""The single HTTP seam between Switchyard and remote providers.

:mod:`.base` defines what a transport is; :mod:`.pool`, :mod:`.connection` and
:mod:`.response` are the real one (kept-alive HTTP/1.1 over asyncio, parsed by
httptools); :mod:`.retry` wraps another transport with openai-python's retry policy. Recording
(:mod:`switchyard.recording.transport`) is one more wrapper.
"""

from __future__ import annotations

import ssl

from switchyard.upstream.base import Transport, UpstreamRequest, UpstreamResponse
from switchyard.upstream.pool import HttpTransport, reachable_url
from switchyard.upstream.retry import RetryTransport

__all__ = [
    "HttpTransport",
    "RetryTransport",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "default_transport",
    "reachable_url",
]


def default_transport(
    *,
    timeout: float,
    connect_timeout: float,
    max_retries: int,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """The live stack: retries around the real network transport. ``ssl_context``:
    None for the system's trust store."""
    real = HttpTransport(timeout=timeout, connect_timeout=connect_timeout, ssl_context=ssl_context)
    return RetryTransport(real, max_retries=max_retries)
