"""Which transport each provider gets: the live network stack, or (with a record
mode) the recorder wrapped around it. The one place that decides it.

In ``replay`` the recorder wraps nothing: no live transport exists, so a replaying
server cannot open a socket to a provider, whatever its base URL says.
"""

from __future__ import annotations

import logging

from switchyard.config import Config, ProviderConfig
from switchyard.hidden import configured_secrets
from switchyard.recording.library import CassetteLibrary, library_for
from switchyard.recording.transport import RecordingTransport
from switchyard.upstream import Transport, default_transport
from switchyard.upstream.tls import verifying_context

log = logging.getLogger(__name__)


def transports_for(config: Config) -> dict[str, Transport]:
    """The transport of each provider of one server, by provider id. Under a record mode
    they share one library: the cassettes are read once, and replay order is the
    server's, whichever provider asks."""
    library = None if config.recording.mode == "live" else library_for(config.recording)
    return {p.id: transport_for(config, p, library) for p in config.providers}


def transport_for(
    config: Config, provider: ProviderConfig, library: CassetteLibrary | None = None
) -> Transport:
    recording = config.recording
    if recording.mode == "live":
        return live_transport(provider)
    return RecordingTransport(
        provider.id,
        library or library_for(recording),
        recording.mode,
        None if recording.mode == "replay" else live_transport(provider),
        realtime=recording.realtime,
        secrets=configured_secrets(provider.api_key, provider.base_url),
    )


def live_transport(provider: ProviderConfig) -> Transport:
    """The network stack for ``provider``, with its timeouts, retries and TLS trust."""
    if provider.tls_verify is False:
        log.warning(
            "provider '%s': tls_verify is false: its certificate is not checked, so "
            "anyone on the way can read and answer its requests",
            provider.id,
        )
    return default_transport(
        timeout=provider.timeout,
        connect_timeout=provider.connect_timeout,
        max_retries=provider.max_retries,
        ssl_context=verifying_context(provider.id, provider.tls_verify),
    )
