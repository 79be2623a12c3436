"""The single HTTP seam between Switchyard and remote providers.

:mod:`.base` defines what a transport is; :mod:`.pool`, :mod:`.connection` and
:mod:`.response` are the real one (kept-alive HTTP/1.1 over asyncio, parsed by
httptools); :mod:`.retry` wraps another transport with openai-python's retry policy. Recording
(:mod:`switchyard.recording.transport`) is one more wrapper.
"""

from __future__ import annotations

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


def default_transport(*, timeout: float, connect_timeout: float, max_retries: int) -> Transport:
    """The live stack: retries around the real network transport."""
    real = HttpTransport(timeout=timeout, connect_timeout=connect_timeout)
    return RetryTransport(real, max_retries=max_retries)
