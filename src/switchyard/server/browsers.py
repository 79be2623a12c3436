"""Requests from web browsers: answered only for pages the config trusts.

With no API keys (the default), any web page a user opens could drive a server on
their machine. A browser sends a cross-site POST with a ``text/plain`` body without
asking first (no CORS preflight): it would spend the providers' keys and rewrite
stored completions. And a page whose domain is rebound to 127.0.0.1 (DNS rebinding)
reads the stored conversations as its own origin. So, as Ollama and Jupyter do:

- with no API keys, a request with an ``Origin`` header (browsers send one on every
  cross-site request, and on their own site's POSTs) passes only from a loopback page
  (``localhost``, 127.0.0.1) or one listed in ``server.allowed_origins``; those get
  CORS headers, so browser apps there work. With keys, any page may try (it holds no
  key unless its user gave it one), with CORS headers too;
- with no API keys, a request that came in on a loopback address must name in its
  Host a loopback or ``.internal`` name, an IP address, this machine's own name or one
  in ``server.allowed_hosts``: a rebound domain does not. A server reached on another
  address (a container's, even with its port published on the host's loopback) cannot
  tell a rebound name from a real one (browsers send no Sec-Fetch-* headers to plain
  http:// sites): there, only API keys keep pages out.

SDKs and curl send no Origin and name the host they connect to: they are not touched.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import Scope

from switchyard.errors import PermissionDeniedError

ANY = "*"
# Host values already found acceptable, for a set lookup instead of a parse per
# request; bounded, since any IP address is acceptable and a client picks the value.
_SEEN_MAX = 256


class BrowserGuard:
    __slots__ = ("_any_origin", "_check_hosts", "_hosts", "_local", "_origins", "_seen")

    def __init__(
        self, allowed_origins: Iterable[str], allowed_hosts: Iterable[str], keys: bool
    ) -> None:
        self._origins = frozenset(origin_key(o) for o in allowed_origins)
        # With keys, a page holds none unless its user gave it one: any origin may try.
        self._any_origin = keys or ANY in self._origins
        self._hosts = frozenset(host_key(h) for h in allowed_hosts) | _own_names()
        # A browser holds no key, so with keys a rebound page gets nowhere anyway.
        self._check_hosts = not keys and ANY not in self._hosts
        self._seen: set[bytes] = set()
        self._local: dict[str, bool] = {}  # the server's own addresses: loopback or not

    def screen(self, scope: Scope) -> PermissionDeniedError | bool:
        """A refusal; or whether a trusted web page sent the request (True: answer it
        with CORS headers); False for any other client."""
        origin = host = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"host":
                host = value
        if (
            self._check_hosts
            and host is not None
            and host not in self._seen
            and self._on_loopback(scope)
            and (refusal := self._host_refusal(host)) is not None
        ):
            return refusal
        if origin is None:
            return False
        return self._origin_refusal(origin.decode("latin-1")) or True

    def _host_refusal(self, host: bytes) -> PermissionDeniedError | None:
        # (No Host at all is HTTP/1.0, which no browser speaks.)
        name = _host_name(host.decode("latin-1"))
        if name and (_trusted_name(name) or _is_address(name) or name in self._hosts):
            if len(self._seen) < _SEEN_MAX:
                self._seen.add(host)
            return None
        return PermissionDeniedError(
            f"Host '{name}' is not a name this server answers to without API keys (a web "
            "page whose domain was pointed at this server would send one). Connect to "
            "localhost or an IP address, add the name to server.allowed_hosts in the "
            "config, or set server.api_keys.",
            code="host_not_allowed",
        )

    def _on_loopback(self, scope: Scope) -> bool:
        """Whether the connection reached one of the server's loopback addresses (a
        Unix socket has none: no rebound name leads to it)."""
        server = scope.get("server")
        if server is None:
            return False
        address = str(server[0])
        local = self._local.get(address)
        if local is None:
            local = self._local[address] = _loopback_address(address)
        return local

    def _origin_refusal(self, origin: str) -> PermissionDeniedError | None:
        if self._any_origin or origin_key(origin) in self._origins:
            return None
        try:
            name = urlsplit(origin).hostname or ""
        except ValueError:
            name = ""
        if name == "localhost" or name.endswith(".localhost") or _loopback_address(name):
            return None
        return PermissionDeniedError(
            f"Requests from web pages are refused unless their origin is allowed (this "
            f"one: {origin[:200]}). To let a browser app there call Switchyard, add its "
            "origin to server.allowed_origins in the config.",
            code="origin_not_allowed",
        )


def _host_name(host: str) -> str:
    """``host`` without its port (``[::1]:8321`` -> ``::1``) or a final dot, lower case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else ""
    if host.count(":") > 1:
        return host.lower()  # a bare IPv6 address (a config entry; no Host is written so)
    name = host.rpartition(":")[0] if ":" in host else host
    return name.lower().removesuffix(".")


def _trusted_name(name: str) -> bool:
    """Names no one outside can point at this server: localhost, and the reserved
    ``.internal`` (Docker Desktop's host.docker.internal)."""
    return name == "localhost" or name.endswith(".localhost") or name.endswith(".internal")


def _own_names() -> frozenset[str]:
    """The machine's own name (Debian maps it to 127.0.1.1). Not getfqdn(): a DNS
    lookup, which can hang a start for seconds where DNS is broken."""
    name = socket.gethostname().lower()
    return frozenset({name} if name else ())


def host_key(host: str) -> str:
    """An allowed_hosts entry as Host values are compared: without a port, lower case."""
    return _host_name(host) if host != ANY else ANY


def origin_key(origin: str) -> str:
    """An origin as browsers send it: lower case, no trailing slash, no default port."""
    origin = origin.lower().rstrip("/")
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback_address(name: str) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    # A dual-stack socket sees IPv4 loopback as ::ffff:127.0.0.1.
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
