"""Reaching providers through an HTTP proxy named in the environment.

``HTTPS_PROXY`` serves https:// providers, ``HTTP_PROXY`` http:// ones, ``ALL_PROXY``
both, and ``NO_PROXY`` lists hosts reached directly; read the way requests, httpx and
openai-python read them (the standard library's parser: lower case wins, an empty value
means none), so a machine set up for those works for Switchyard too.

An https:// provider is reached through a ``CONNECT`` tunnel: the proxy sees the host
name, TLS runs end to end. An http:// provider's requests go to the proxy in absolute
form. Only http:// proxies are spoken (squid, tinyproxy, most corporate proxies); a
``socks5://`` or ``https://`` proxy is refused with a message, never silently bypassed.

A :class:`ProxyError` has two texts: the full one, with hosts and ports, for the log,
and ``public`` for the API client, which names only the variable (hosts are internal).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
import urllib.request
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

# A proxy's answer to CONNECT is a status line and a few headers.
MAX_TUNNEL_ANSWER = 64 * 1024
_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


class ProxyError(ConnectionError):
    """The proxy could not be used: unreachable, refused, or not supported."""

    def __init__(self, message: str, public: str) -> None:
        super().__init__(message)
        self.public = public


class Proxy(NamedTuple):
    host: str
    port: int
    # The Proxy-Authorization value, from user:password in the proxy's URL.
    authorization: str | None
    variable: str  # where it was named: HTTPS_PROXY, HTTP_PROXY or ALL_PROXY

    @property
    def shown(self) -> str:
        """For logs: the URL without its credentials, and where it was named."""
        return f"http://{authority(self.host, self.port)} ({self.variable})"


def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy for ``scheme://host:port`` from the environment, or None for a direct
    connection. ProxyError if the proxy named is not one Switchyard can speak to."""
    proxies = urllib.request.getproxies_environment()
    key = scheme if scheme in proxies else "all"
    url = proxies.get(key)
    if not url or bypassed(host, port, proxies.get("no", "")):
        return None
    return _parse(url if "://" in url else f"http://{url}", f"{key.upper()}_PROXY")


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` lists the host: ``*`` for every host; a name for itself and
    its subdomains (leading and trailing dots change nothing); an IP address or network
    (``10.0.0.0/8``); any of them with ``:port`` for that port only."""
    host = host.lower().strip("[]").rstrip(".")
    for entry in "".join(no_proxy.lower().split()).split(","):
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").strip(".")
        if name == "*" or (name and _matches(host, name)):
            return True
    return False


def _has_port(entry: str) -> bool:
    head, _, tail = entry.rpartition(":")
    return bool(head) and tail.isdigit() and (entry.count(":") == 1 or head.endswith("]"))


def _matches(host: str, name: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: itself or a subdomain
        return host == name or host.endswith("." + name)
    try:
        return address in ipaddress.ip_network(name, strict=False)
    except ValueError:  # a name listed, an address asked: no suffix match on addresses
        return False


def _parse(url: str, variable: str) -> Proxy:
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:  # not a number: the URL is broken (say, a '/' in the password)
        port = 0
    if not parts.hostname or not port or "@" in parts.path:
        text = f"{variable} is not a proxy URL; write it http://[user:password@]host:port"
        raise ProxyError(text, text)
    if parts.scheme != "http":
        text = (
            f"{variable} names a {parts.scheme}:// proxy, and Switchyard speaks to http:// "
            "proxies only; name one, or list the provider's host in NO_PROXY"
        )
        raise ProxyError(text, text)
    return Proxy(parts.hostname, port, basic_authorization(parts), variable)


def basic_authorization(parts: SplitResult) -> str | None:
    """The Basic ``Authorization`` value for a URL's ``user:password@``, if it has one."""
    if parts.username is None:
        return None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy) -> None:
    """Ask the proxy, connected on ``sock``, for a tunnel to ``host:port``."""
    loop = asyncio.get_running_loop()
    target = authority(host, port)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.authorization is not None:
        head += f"Proxy-Authorization: {proxy.authorization}\r\n"
    await loop.sock_sendall(sock, (head + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer and len(answer) <= MAX_TUNNEL_ANSWER:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            break
        answer += data
    head_bytes, end, rest = answer.partition(b"\r\n\r\n")
    status = _STATUS.match(head_bytes)
    if status is None or not end:
        raise _failure(proxy, f"gave no answer to CONNECT {target}", "gave no answer")
    if not 200 <= int(status[1]) < 300:
        raise refusal(proxy, f"a tunnel to {target}", int(status[1]))
    if rest:  # in TLS the client speaks first: bytes here are not the provider's
        raise _failure(proxy, f"sent bytes after opening a tunnel to {target}", "misbehaved")


def refusal(proxy: Proxy, what: str, code: int) -> ProxyError:
    """The proxy answered ``code`` (not 2xx) to ``what`` (the request or the tunnel)."""
    hint = ""
    if code == 407:
        hint = (
            ": it wants credentials; put user:password in the proxy's URL"
            if proxy.authorization is None
            else ": it did not accept the credentials in the proxy's URL"
        )
    return _failure(proxy, f"refused {what} ({code}){hint}", f"refused the request ({code}){hint}")


def too_slow(proxy: Proxy, tunnel_to: str | None) -> ProxyError:
    """The proxy did not accept a connection (``tunnel_to`` None) or open its tunnel
    to ``tunnel_to`` within the provider's connect_timeout. A tunnel waits for the
    proxy's own connection to the provider, so either may be the slow one."""
    if tunnel_to is None:
        return _failure(
            proxy,
            "did not accept a connection within the provider's connect_timeout",
            "did not accept a connection in time; check that it is up",
        )
    return _failure(
        proxy,
        f"did not open a tunnel to {tunnel_to} within the provider's connect_timeout",
        "did not open its tunnel to the provider in time: the proxy, or the provider "
        "behind it, is slow or cannot be reached; check both, or raise the provider's "
        "connect_timeout",
    )


def unreachable(proxy: Proxy, err: OSError) -> ProxyError:
    return _failure(proxy, f"cannot be reached ({type(err).__name__}: {err})", "cannot be reached")


def _failure(proxy: Proxy, detail: str, public: str) -> ProxyError:
    return ProxyError(
        f"the proxy {proxy.shown} {detail}", f"the proxy named by {proxy.variable} {public}"
    )
