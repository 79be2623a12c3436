"""The real transport: kept-alive HTTP/1.1 connections to each provider.

One :class:`HttpTransport` per provider; it keeps idle connections per origin (last in,
first out, so the freshest is reused and the rest can expire), opens new ones without a
limit (a provider says itself how much it takes, with 429s), and turns network
failures into :class:`UpstreamUnavailableError` (503) / :class:`UpstreamTimeoutError`
(504) before an answer; :mod:`.response` reads the body and turns failures after the
answer had started into :class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from functools import lru_cache, partial
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohappyeyeballs

from switchyard.upstream.base import (
    OUT_OF_FILES,
    ConnectFailed,
    UpstreamRequest,
    UpstreamResponse,
    network_error,
)
from switchyard.upstream.connection import ConnectionLostError, Http1Connection
from switchyard.upstream.proxies import (
    Proxy,
    basic_authorization,
    open_tunnel,
    proxy_for,
    refusal,
    too_slow,
    unreachable,
)
from switchyard.upstream.response import HttpResponse
from switchyard.upstream.tls import system_context

log = logging.getLogger(__name__)

# Idle connections older than this are closed rather than reused: servers drop idle
# keep-alive connections after 5-60 s, and a request sent on one that is being
# dropped fails. (A connection that dies before any byte of its answer is retried
# once on a new connection anyway; this keeps that rare.)
KEEPALIVE_EXPIRY = 15.0
# How long the first address family gets before the next one is tried in parallel.
HAPPY_EYEBALLS_DELAY = 0.25
# An answer released before its end is read on for this long and this much (see
# Http1Connection.drain), so that its connection can serve another request.
DRAIN_SECONDS = 0.1
DRAIN_BYTES = 64 * 1024
# A provider's host that goes silent without closing (a crashed machine, a dropped
# route, a NAT or load balancer that forgot the connection) while a request waits for
# its answer would otherwise be noticed only when the read timeout (600 s by default)
# runs out. TCP keep-alive probes a connection that has been quiet for
# PROBE_AFTER_SECONDS and gives up after PROBE_COUNT unanswered probes: a 504. A live
# provider's kernel answers the probes whatever its model is doing; the kernel sends
# none while bytes of the request are unacknowledged or waiting to be read, so a
# provider slow to read a large body is not cut off (which TCP_USER_TIMEOUT would do:
# it also ends a connection held at a zero window, by a live but busy server). Idle
# pooled connections expire (KEEPALIVE_EXPIRY) before their first probe.
PROBE_AFTER_SECONDS = 30
PROBE_EVERY_SECONDS = 10
PROBE_COUNT = 3


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class _Target(NamedTuple):
    origin: Origin
    path: str  # with the query
    host_header: str
    authorization: str | None  # Basic, from user:password in the URL


@lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default  # .port raises ValueError for a bad port
    host = parts.netloc.rpartition("@")[2]  # no credentials in the Host header
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    origin = Origin(parts.scheme, parts.hostname, port)
    return _Target(origin, path, host, basic_authorization(parts))


def reachable_url(url: str) -> bool:
    """Whether the transport can send to ``url`` at all (an http(s) URL with a host and
    a numeric port): what a provider's config is checked with at start."""
    try:
        _target(url)
    except ValueError:  # urlsplit's too, for a bracketed host that is not IPv6
        return False
    return True


def _request_bytes(request: UpstreamRequest, target: _Target, proxy: Proxy | None) -> bytes:
    body = request.content
    path, credentials = target.path, ""
    if proxy is not None and target.origin.scheme == "http":
        # Through a proxy (not a tunnel): the absolute URL, and the proxy's credentials.
        path = f"http://{target.host_header}{path}"
        if proxy.authorization is not None:
            credentials = f"Proxy-Authorization: {proxy.authorization}\r\n"
    lines = [f"{request.method} {path} HTTP/1.1\r\nHost: {target.host_header}\r\n{credentials}"]
    encoding_asked = False
    for name, value in request.headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} holds a line break")
        encoding_asked = encoding_asked or name.lower() == "accept-encoding"
        lines.append(f"{name}: {value}\r\n")
    if target.authorization is not None and not any(
        name.lower() == "authorization" for name in request.headers
    ):
        # As httpx does: a base_url's user:password is Basic auth, unless the provider
        # sends its own key.
        lines.append(f"Authorization: {target.authorization}\r\n")
    if not encoding_asked:
        # Not deflate: servers differ on whether it is zlib-wrapped or raw.
        lines.append("Accept-Encoding: gzip\r\n")
    if body is not None or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode()
    return head + body if body else head


class HttpTransport:
    """Sends each request on an idle kept-alive connection to its origin, or a new one."""

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[Http1Connection]] = {}
        # Each origin's proxy (None: direct), read from the environment at its first request.
        self._proxies: dict[Origin, Proxy | None] = {}
        # None: the system's trust store (and SSL_CERT_FILE / SSL_CERT_DIR), shared.
        self._ssl = ssl_context
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None  # expires idle connections

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        try:
            target = _target(request.url)
            proxy = self._proxy(target.origin)
            data = _request_bytes(request, target, proxy)
            conn = await self._exchange(self._checkout(target.origin), target.origin, proxy, data)
            # A 407 through a proxy (not a tunnel) is the proxy's, not the provider's.
            if conn.status == 407 and proxy is not None and target.origin.scheme == "http":
                conn.close()
                raise refusal(proxy, f"a request to {target.host_header}", 407)
        except ConnectFailed as failed:
            raise network_error(request, failed.cause, unsent=True) from failed.cause
        except (OSError, TimeoutError, ValueError) as err:  # ValueError: a bad URL or host
            # Sent: the provider may have read it, even on a new connection it closed at
            # once (a crash on this very request); only a reused connection's race is
            # known to be safe, and _exchange already sent that once more.
            raise network_error(request, err) from err
        return HttpResponse(conn, request, partial(self.release, target.origin))

    async def _exchange(
        self, conn: Http1Connection | None, origin: Origin, proxy: Proxy | None, data: bytes
    ) -> Http1Connection:
        """Send on ``conn`` (an idle one) or a new connection; wait for the answer's head."""
        if conn is not None:
            try:
                return await _send_on(conn, data)
            except ConnectionLostError as err:
                # The provider had dropped this idle connection: once more on a new one.
                if not err.resendable:
                    raise
        try:
            fresh = await self._connect(origin, proxy)
        except (OSError, TimeoutError) as err:
            raise ConnectFailed(err) from err
        return await _send_on(fresh, data)

    def _proxy(self, origin: Origin) -> Proxy | None:
        if origin in self._proxies:
            return self._proxies[origin]
        proxy = self._proxies[origin] = proxy_for(*origin)
        if proxy is not None:
            log.info("%s://%s:%d is reached through the proxy %s", *origin, proxy.shown)
        return proxy

    async def _connect(self, origin: Origin, proxy: Proxy | None) -> Http1Connection:
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if origin.scheme == "https" else None
        waiting = False  # on the proxy: to accept, then (https) to open its tunnel
        tunnel_to = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if proxy is None:
                    sock = await _open_socket(origin.host, origin.port)
                else:
                    waiting = True
                    sock = await _open_proxy_socket(proxy)
                try:
                    if proxy is not None and context is not None:
                        tunnel_to = origin.host
                        await open_tunnel(sock, origin.host, origin.port, proxy)
                    waiting = False
                    _, conn = await loop.create_connection(
                        lambda: Http1Connection(loop, self._timeout),
                        sock=sock,
                        ssl=context,
                        server_hostname=origin.host if context else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            if proxy is not None and waiting:
                # Not the provider's base_url to check: say what the proxy did not do.
                raise too_slow(proxy, tunnel_to) from None
            raise
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        return self._ssl or system_context()

    def _checkout(self, origin: Origin) -> Http1Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            conn.on_idle_close = None
            if now - conn.idle_since < self._keepalive_expiry and conn.reusable:
                return conn
            conn.close()
        return None

    def release(self, origin: Origin, conn: Http1Connection) -> None:
        """Back to the pool if the answer was read to its end and the provider keeps the
        connection open; an answer left before its end is drained first (briefly: a
        provider still generating for a client that left is closed, so it stops)."""
        if self._closed or conn.closed:
            conn.close()
            return
        if not conn.complete:
            conn.drain(partial(self.release, origin), DRAIN_BYTES, DRAIN_SECONDS)
            return
        if not conn.reusable:
            conn.close()
            return
        idle = self._idle.setdefault(origin, [])
        now = asyncio.get_running_loop().time()
        # The oldest are at the bottom, where checkouts (from the top) never reach while
        # traffic goes on: closed here once expired, not left open until the provider
        # closes them.
        self._expire(idle, now)
        conn.idle_since = now
        conn.on_idle_close = idle.remove
        # Reading again if flow control had paused it, so that a close is seen while idle.
        conn.resume_reading()
        idle.append(conn)
        if self._sweep is None:
            # And when traffic stops: a burst of 500 streams left 500 sockets open
            # until the next request came.
            self._sweep = asyncio.get_running_loop().call_later(
                self._keepalive_expiry, self._sweep_idle
            )

    def _expire(self, idle: list[Http1Connection], now: float) -> None:
        while idle and now - idle[0].idle_since >= self._keepalive_expiry:
            expired = idle.pop(0)
            expired.on_idle_close = None
            expired.close()

    def _sweep_idle(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for idle in self._idle.values():
            self._expire(idle, now)
        oldest = min((idle[0].idle_since for idle in self._idle.values() if idle), default=None)
        if oldest is not None:
            self._sweep = loop.call_at(oldest + self._keepalive_expiry, self._sweep_idle)

    async def aclose(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in idle:
                conn.on_idle_close = None
                conn.close()
        self._idle.clear()


async def _open_socket(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Happy eyeballs (RFC 8305), as aiohttp does it: uvloop's create_connection tries
    # addresses one after the other, so an IPv6 route that drops packets would eat the
    # whole connect timeout before IPv4 is tried.
    sock = await aiohappyeyeballs.start_connection(
        addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
    )
    try:
        _detect_dead_peer(sock)
    except OSError:  # a nicety: a system that refuses it still gets its request through
        log.debug("keep-alive options refused on %s:%d", host, port, exc_info=True)
    return sock


def _detect_dead_peer(sock: socket.socket) -> None:
    """Keep-alive probes (see PROBE_AFTER_SECONDS); a system without one of the options
    keeps its own default for it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # macOS names the idle time TCP_KEEPALIVE.
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    for option, value in (
        (idle, PROBE_AFTER_SECONDS),
        (getattr(socket, "TCP_KEEPINTVL", None), PROBE_EVERY_SECONDS),
        (getattr(socket, "TCP_KEEPCNT", None), PROBE_COUNT),
    ):
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def _open_proxy_socket(proxy: Proxy) -> socket.socket:
    try:
        return await _open_socket(proxy.host, proxy.port)
    except OSError as err:  # say it is the proxy, not the provider, that is unreachable
        if err.errno in OUT_OF_FILES:
            raise  # ours, not the proxy's
        raise unreachable(proxy, err) from err


async def _send_on(conn: Http1Connection, data: bytes) -> Http1Connection:
    """``conn`` with the answer's head in; closed if left mid-exchange (an error, a
    cancelled request)."""
    try:
        await conn.request(data)
    except BaseException:
        conn.close()
        raise
    return conn
