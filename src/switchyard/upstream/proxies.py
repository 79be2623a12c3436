"""Reaching providers through an HTTP proxy named in the environment.

``HTTPS_PROXY`` serves https:// providers, ``HTTP_PROXY`` http:// ones, ``ALL_PROXY``
both, and ``NO_PROXY`` lists hosts reached directly; upper or lower case, read the way
curl, requests, httpx and openai-python read them (the standard library's parser), so a
machine set up for those works for Switchyard too.

An https:// provider is reached through a ``CONNECT`` tunnel: the proxy sees the host
name, TLS runs end to end. An http:// provider's requests go to the proxy in absolute
form. Only http:// proxies are spoken (squid, tinyproxy, most corporate proxies); a
``socks5://`` or ``https://`` proxy is refused with a message, never silently bypassed.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import urllib.request
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

# A proxy's answer to CONNECT is a status line and a few headers.
MAX_TUNNEL_ANSWER = 64 * 1024


class ProxyError(ConnectionError):
    """The proxy could not be used: unreachable, refused the tunnel, or not supported."""


class Proxy(NamedTuple):
    host: str
    port: int
    # The Proxy-Authorization value, from user:password in the proxy's URL.
    authorization: str | None
    # For messages and logs: the URL without its password, and the variable it came from.
    shown: str


def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy for ``scheme://host:port`` from the environment, or None for a direct
    connection. ProxyError if the proxy named is not one Switchyard can speak to."""
    proxies = urllib.request.getproxies_environment()
    key = scheme if scheme in proxies else "all"
    url = proxies.get(key)
    if not url or bypassed(host, port, proxies.get("no", "")):
        return None
    variable = f"{key.upper()}_PROXY"
    return _parse(url if "://" in url else f"http://{url}", variable)


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` lists the host, as curl reads it: ``*`` for every host; a
    name for itself and its subdomains (a leading dot changes nothing); an IP address or
    network (``10.0.0.0/8``); any of them with ``:port`` for that port only."""
    host = host.lower().strip("[]")
    for entry in no_proxy.lower().replace(" ", "").split(","):
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if name == "*" or (name and _matches(host, name)):
            return True
    return False


def _has_port(entry: str) -> bool:
    head, _, tail = entry.rpartition(":")
    return bool(head) and tail.isdigit() and (entry.count(":") == 1 or head.endswith("]"))


def _matches(host: str, name: str) -> bool:
    if host == name or host.endswith("." + name):
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False)
    except ValueError:  # not an address, or not a network
        return False


def _parse(url: str, variable: str) -> Proxy:
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ProxyError(
            f"{variable} names {parts.scheme}://{parts.hostname or ''}, and Switchyard speaks "
            "to http:// proxies only (http://host:port); name one, or list the provider's "
            "host in NO_PROXY to reach it directly"
        )
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    shown = f"http://{parts.hostname}:{port} ({variable})"
    return Proxy(parts.hostname, port, authorization, shown)


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy) -> None:
    """Ask the proxy, connected on ``sock``, for a tunnel to ``host:port``. Nothing
    follows the proxy's answer: in TLS the client speaks first."""
    loop = asyncio.get_running_loop()
    target = authority(host, port)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.authorization is not None:
        head += f"Proxy-Authorization: {proxy.authorization}\r\n"
    await loop.sock_sendall(sock, (head + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = await loop.sock_recv(sock, 4096)
        if not data or len(answer) > MAX_TUNNEL_ANSWER:
            raise ProxyError(f"the proxy {proxy.shown} gave no answer to CONNECT {target}")
        answer += data
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    code = status.split(" ", 2)[1] if status.count(" ") >= 1 else status
    if not (code.isdigit() and 200 <= int(code) < 300):
        raise refusal(proxy, f"a tunnel to {target}", status)


def refusal(proxy: Proxy, what: str, status: str) -> ProxyError:
    hint = " (put user:password in the proxy's URL)" if " 407" in f" {status}" else ""
    return ProxyError(f"the proxy {proxy.shown} refused {what}: {status}{hint}")
