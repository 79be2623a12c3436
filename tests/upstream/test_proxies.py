"""Providers reached through an HTTP proxy named in the environment: which proxy a host
takes, then real traffic through proxy.py (absolute-form requests, CONNECT tunnels,
credentials, a proxy that is down or not supported)."""

from __future__ import annotations

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
    assert "ALL_PROXY names socks5://socks.corp" in message and "NO_PROXY" in message
    assert "secret" not in message


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


async def test_an_https_provider_is_reached_through_a_tunnel(
    env: pytest.MonkeyPatch, proxy: HttpProxy
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def answer(exchange: Exchange) -> bytes:
        return JSON_OK

    server = ScriptedServer(answer)
    url = await server.start(server_context)
    env.setenv("HTTPS_PROXY", proxy.url)
    transport = HttpTransport(timeout=5.0, connect_timeout=5.0, ssl_context=client_context)
    try:
        answer_ = await transport.send(post(url + "/v1/chat/completions"))
        assert await answer_.read() == b'{"ok":true}'
    finally:
        await transport.aclose()
        await server.stop()
    # TLS ran end to end: the proxy saw a tunnel to the host, and added nothing inside it.
    assert server.exchanges[0].header("via") is None
    await proxy.wait_for_log(f"CONNECT localhost:{url.rsplit(':', 1)[1]}")


async def test_proxy_credentials_from_its_url(
    env: pytest.MonkeyPatch, tmp_path: Path, upstream: tuple[ScriptedServer, str]
) -> None:
    server, url = upstream
    with http_proxy(tmp_path, basic_auth="switch:p@ss") as guarded:
        env.setenv("HTTP_PROXY", guarded.url)
        transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
        with pytest.raises(UpstreamUnavailableError) as caught:
            await transport.send(post(url + "/v1/x"))
        await transport.aclose()
        assert f"refused a request to {url.split('//')[1]}: 407" in str(caught.value)
        assert "user:password" in str(caught.value)
        env.setenv("HTTP_PROXY", guarded.url.replace("//", "//switch:p%40ss@"))
        transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
        try:
            assert await (await transport.send(post(url + "/v1/x"))).read() == b'{"ok":true}'
        finally:
            await transport.aclose()
    # The credentials were for the proxy: it took them off before forwarding.
    assert [e.header("proxy-authorization") for e in server.exchanges] == [None]


async def test_a_tunnel_refused_for_want_of_credentials_says_so(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with http_proxy(tmp_path, basic_auth="switch:secret") as guarded:
        env.setenv("HTTPS_PROXY", guarded.url)
        transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
        with pytest.raises(UpstreamUnavailableError) as caught:
            await transport.send(post("https://localhost:1/v1/x"))
        await transport.aclose()
    message = str(caught.value)
    assert "refused a tunnel to localhost:1: HTTP/1.1 407" in message
    assert "user:password" in message and guarded.url in message


async def test_a_proxy_that_is_down_is_named_and_no_proxy_bypasses_it(
    env: pytest.MonkeyPatch, upstream: tuple[ScriptedServer, str]
) -> None:
    server, url = upstream
    env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    transport = HttpTransport(timeout=2.0, connect_timeout=2.0)
    with pytest.raises(UpstreamUnavailableError, match=r"the proxy http://127\.0\.0\.1:\d+ "):
        await transport.send(post(url + "/v1/x"))
    await transport.aclose()
    env.setenv("NO_PROXY", "localhost")
    transport = HttpTransport(timeout=2.0, connect_timeout=2.0)
    try:
        assert await (await transport.send(post(url + "/v1/x"))).read() == b'{"ok":true}'
    finally:
        await transport.aclose()
    assert server.exchanges[0].header("via") is None
