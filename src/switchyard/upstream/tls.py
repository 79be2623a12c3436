"""The trust a provider's TLS connections verify its certificate with (``tls_verify``)."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from switchyard.errors import ConfigError


@functools.cache
def system_context() -> ssl.SSLContext:
    """The system's trust store (with SSL_CERT_FILE / SSL_CERT_DIR), one per process and
    made at the first https connection: loading it takes ~45 ms, so neither the start
    nor each provider pays for it again."""
    return ssl.create_default_context()


def verifying_context(provider_id: str, verify: bool | str) -> ssl.SSLContext | None:
    """The context for ``tls_verify``: None for the system's (:func:`system_context`,
    when first needed); for a path, one that trusts only the CA certificates of that PEM
    file; for False, one that checks nothing. Made at once, so that a path that is not a
    file of certificates fails at start."""
    if verify is True:
        return None
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(Path(verify).expanduser()))
    except OSError as err:  # ssl.SSLError too: a file that holds no certificate
        reason = err.reason if isinstance(err, ssl.SSLError) else err.strerror
        raise ConfigError(
            f"provider '{provider_id}': tls_verify {verify!r} cannot be read as CA "
            f"certificates ({reason or err}); give the path of a PEM file of them, true "
            "for the system's trust store, or false"
        ) from None
