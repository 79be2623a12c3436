"""Providers reached through an HTTP proxy named in the environment: which proxy a host
takes, then real traffic through proxy.py (absolute-form requests, CONNECT tunnels,
credentials, a proxy that is down or not supported)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from tests.support.http_proxy import HttpProxy, http_proxy
from tests.support.scripted_server import JSON_OK, Exchange, ScriptedServer, post
from tests.support.server import free_port

from switchyard.errors import UpstreamUnavailableError
from switchyard.upstream import HttpTransport
from switchyard.upstream.proxies import bypassed, proxy_for

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable but the ones a test sets (either case)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_each_scheme_takes_its_own_proxy_else_all_proxy(env: pytest.MonkeyPatch) -> None:
    assert proxy_for("https", "api.openai.com", 443) is None
    env.setenv("ALL_PROXY", "http://all:8000")
    env.setenv("https_proxy", "squid.corp:3128")  # no scheme: http://
    https = proxy_for("https", "api.openai.com", 443)
    assert https is not None and (https.host, https.port) == ("squid.corp", 3128)
    assert https.shown == "http://squid.corp:3128 (HTTPS_PROXY)"
    env.setenv("HTTP_PROXY", "http://[fd00::1]:3128")
    assert proxy_for("http", "ollama.lan", 11434) == ("fd00::1", 3128, None, "HTTP_PROXY")
    env.setenv("http_proxy", "")  # lower case wins; empty means none, so ALL_PROXY
    http = proxy_for("http", "ollama.lan", 11434)
    assert http is not None and (http.host, http.port, http.authorization) == ("all", 8000, None)


def test_no_proxy_hosts_are_reached_directly(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", "http://squid:3128")
    env.setenv("NO_PROXY", "localhost, .internal,10.0.0.0/8,vllm:8443")
    assert proxy_for("https", "models.internal", 443) is None
    assert proxy_for("https", "10.2.3.4", 443) is None
    assert proxy_for("https", "vllm", 8443) is None
    assert proxy_for("https", "vllm", 443) is not None  # another port
    assert proxy_for("https", "api.together.xyz", 443) is not None


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("api.corp.com", 443, "corp.com", True),
        ("api.corp.com", 443, ".corp.com", True),
        ("notcorp.com", 443, "corp.com", False),
        ("API.Corp.com", 443, "corp.COM", True),
        ("localhost", 80, "localhost:8080", False),
        ("localhost", 8080, "localhost:8080", True),
        ("::1", 80, "::1", True),
        ("::1", 80, "[::1]:80", True),
        ("192.168.1.5", 80, "192.168.0.0/16", True),
        ("anything", 1, "*", True),
        ("api.corp.com.", 443, "corp.com.", True),
        ("api.corp.com", 443, "x.org,\tcorp.com", True),
        ("127.0.0.1", 443, "0.0.1", False),  # a name suffix never matches an address
        ("anything", 1, "", False),
    ],
)
def test_no_proxy_is_read_as_curl_reads_it(
    host: str, port: int, no_proxy: str, direct: bool
) -> None:
    assert bypassed(host, port, no_proxy) is direct


async def test_a_proxy_that_is_not_http_is_refused_not_bypassed(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("ALL_PROXY", "socks5://user:secret@socks.corp:1080")
    transport = HttpTransport(timeout=1.0, connect_timeout=1.0)
    with pytest.raises(UpstreamUnavailableError) as caught:
        await transport.send(post("https://api.openai.com/v1/chat/completions"))
    message = str(caught.value)
    assert "ALL_PROXY names a socks5:// proxy" in message and "NO_PROXY" in message
    assert "secret" not in message and "socks.corp" not in message


async def test_a_broken_proxy_url_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", "http://admin:12/34@proxy.corp:3128")  # '/' not encoded
    transport = HttpTransport(timeout=1.0, connect_timeout=1.0)
    with pytest.raises(UpstreamUnavailableError) as caught:
        await transport.send(post("https://api.openai.com/v1/chat/completions"))
    assert "HTTPS_PROXY is not a proxy URL" in str(caught.value)
    assert "34" not in str(caught.value)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[HttpProxy]:
    with http_proxy(tmp_path) as running:
        yield running


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[ScriptedServer, str]]:
    async def answer(exchange: Exchange) -> bytes:
        return JSON_OK

    server = ScriptedServer(answer)
    url = await server.start()
    yield server, url
    await server.stop()


async def test_an_http_provider_is_reached_through_the_proxy(
    env: pytest.MonkeyPatch, proxy: HttpProxy, upstream: tuple[ScriptedServer, str]
) -> None:
    server, url = upstream
    env.setenv("HTTP_PROXY", proxy.url)
    transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
    try:
        for _ in range(2):
            answer = await transport.send(post(url + "/v1/chat/completions"))
            assert (answer.status, await answer.read()) == (200, b'{"ok":true}')
    finally:
        await transport.aclose()
    # proxy.py forwarded both in origin form, on one kept-alive connection; it adds its
    # Via header to the first request of a connection only.
    assert (server.exchanges[0].header("via") or "").startswith("1.1 proxy.py")
    assert [e.head.split(b" ")[1] for e in server.exchanges] == [b"/v1/chat/completions"] * 2
    assert [e.conn for e in server.exchanges] == [1, 1]
    await proxy.wait_for_log("POST localhost:")


@pytest.fixture
async def tls_upstream() -> AsyncIterator[tuple[ScriptedServer, str, ssl.SSLContext]]:
    """An https:// provider for localhost, and a client context that trusts it. It
    answers 407 itself to /v1/407: a provider's answer, which a tunnel must pass on."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def answer(exchange: Exchange) -> bytes:
        if b" /v1/407 " in exchange.head:
            return b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        return JSON_OK

    server = ScriptedServer(answer)
    url = await server.start(server_context)
    yield server, url, client_context
    await server.stop()


async def test_an_https_provider_is_reached_through_a_tunnel(
    env: pytest.MonkeyPatch,
    proxy: HttpProxy,
    tls_upstream: tuple[ScriptedServer, str, ssl.SSLContext],
) -> None:
    server, url, client_context = tls_upstream
    env.setenv("HTTPS_PROXY", proxy.url)
    transport = HttpTransport(timeout=5.0, connect_timeout=5.0, ssl_context=client_context)
    try:
        assert await (await transport.send(post(url + "/v1/x"))).read() == b'{"ok":true}'
        assert (await transport.send(post(url + "/v1/407"))).status == 407  # the provider's
    finally:
        await transport.aclose()
    # TLS ran end to end: the proxy saw a tunnel to the host, and added nothing inside it.
    assert server.exchanges[0].header("via") is None
    await proxy.wait_for_log(f"CONNECT localhost:{url.rsplit(':', 1)[1]}")


async def test_proxy_credentials_from_its_url_for_requests_and_tunnels(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    upstream: tuple[ScriptedServer, str],
    tls_upstream: tuple[ScriptedServer, str, ssl.SSLContext],
) -> None:
    (server, url), (tls_server, tls_url, client_context) = upstream, tls_upstream
    with http_proxy(tmp_path, basic_auth="switch:p@ss") as guarded:
        env.setenv("HTTP_PROXY", guarded.url.replace("//", "//switch:p%40ss@"))
        env.setenv("HTTPS_PROXY", guarded.url.replace("//", "//switch:p%40ss@"))
        transport = HttpTransport(timeout=5.0, connect_timeout=5.0, ssl_context=client_context)
        try:
            for base in (url, tls_url):
                assert await (await transport.send(post(base + "/v1/x"))).read() == b'{"ok":true}'
        finally:
            await transport.aclose()
    # The credentials were for the proxy: none reached a provider.
    assert [e.header("proxy-authorization") for e in server.exchanges] == [None]
    assert [e.header("proxy-authorization") for e in tls_server.exchanges] == [None]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_wanting_credentials_says_so(
    env: pytest.MonkeyPatch, tmp_path: Path, scheme: str
) -> None:
    with http_proxy(tmp_path, basic_auth="switch:secret") as guarded:
        messages = []
        for user in ("", "switch:wrong@"):
            env.setenv(f"{scheme.upper()}_PROXY", guarded.url.replace("//", f"//{user}"))
            transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
            with pytest.raises(UpstreamUnavailableError) as caught:
                await transport.send(post(f"{scheme}://localhost:1/v1/x"))
            await transport.aclose()
            messages.append(str(caught.value))
    variable = f"{scheme.upper()}_PROXY"
    assert (
        f"the proxy named by {variable} refused the request (407): it wants credentials"
        in (messages[0])
    )
    assert "did not accept the credentials in the proxy's URL" in messages[1]
    # Hosts are internal: the log has them, the client's message does not.
    assert all("localhost" not in m and "127.0.0.1" not in m for m in messages)


async def test_a_proxy_that_is_down_is_named_and_no_proxy_bypasses_it(
    env: pytest.MonkeyPatch, upstream: tuple[ScriptedServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = upstream
    port = free_port()
    env.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    transport = HttpTransport(timeout=2.0, connect_timeout=2.0)
    with pytest.raises(UpstreamUnavailableError, match="the proxy named by HTTP_PROXY cannot be"):
        await transport.send(post(url + "/v1/x"))
    await transport.aclose()
    assert f"the proxy http://127.0.0.1:{port} (HTTP_PROXY) cannot be reached" in caplog.text
    env.setenv("NO_PROXY", "localhost")
    transport = HttpTransport(timeout=2.0, connect_timeout=2.0)
    try:
        assert await (await transport.send(post(url + "/v1/x"))).read() == b'{"ok":true}'
    finally:
        await transport.aclose()
    assert server.exchanges[0].header("via") is None


@pytest.fixture
def silent_proxy() -> Iterator[int]:
    """A port that takes connections (the kernel queues them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        yield listener.getsockname()[1]


@pytest.fixture
def full_listener(silent_proxy: int) -> Iterator[int]:
    """The same with its one place in the queue taken: a connection to it hangs, as to a
    host that drops packets."""
    with socket.create_connection(("127.0.0.1", silent_proxy)):
        yield silent_proxy


@pytest.mark.parametrize(
    ("proxy_port", "told", "logged"),
    [
        (
            "full_listener",
            "did not accept a connection in time; check that it is up",
            "did not accept a connection within",
        ),
        (
            "silent_proxy",
            "did not open its tunnel to the provider in time: the proxy, or the provider "
            "behind it, is slow or cannot be reached; check both, or raise the provider's "
            "connect_timeout",
            "did not open a tunnel to localhost within",
        ),
    ],
)
async def test_a_slow_proxy_is_named_not_the_providers_base_url(
    env: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    proxy_port: str,
    told: str,
    logged: str,
) -> None:
    port = request.getfixturevalue(proxy_port)
    env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    transport = HttpTransport(timeout=5.0, connect_timeout=0.3)
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            await transport.send(post("https://localhost:1/v1/x"))
    finally:
        await transport.aclose()
    assert caught.value.message == (
        f"provider 'p' cannot be reached: the proxy named by HTTPS_PROXY {told}"
    )
    assert f"(HTTPS_PROXY) {logged} the provider's connect_timeout" in caplog.text
