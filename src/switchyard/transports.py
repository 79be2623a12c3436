"""Which transport each provider gets: the live network stack, or (with a record
mode) the recorder wrapped around it. The one place that decides it."""

from __future__ import annotations

from switchyard.config import Config, ProviderConfig
from switchyard.upstream import Transport, default_transport


def transport_for(config: Config, provider: ProviderConfig) -> Transport:
    return default_transport(
        timeout=provider.timeout,
        connect_timeout=provider.connect_timeout,
        max_retries=provider.max_retries,
    )
