"""Web pages through a real server: refused unless trusted (``server/browsers.py``).

The attacks are a browser's: a cross-site POST a page sends without a preflight (a
``text/plain`` body), and a page whose own domain was rebound to 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.server import ServerHandle, thread_server

MODEL = "fake/gpt-fake"
BODY = b'{"model": "fake/gpt-fake", "messages": [{"role": "user", "content": "hi"}]}'
TRUSTED = "https://app.example.com"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream: FakeOpenAI) -> Iterator[ServerHandle]:
    config = {
        "server": {"allowed_origins": [TRUSTED], "allowed_hosts": ["gateway.internal"]},
        "providers": [upstream.provider_config()],
    }
    with thread_server(config) as handle:
        yield handle


def _post(server: ServerHandle, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, headers=headers, timeout=10, **kw)


def test_a_cross_site_post_from_an_untrusted_page_never_reaches_the_provider(
    server: ServerHandle, upstream: FakeOpenAI
) -> None:
    before = upstream.calls
    headers = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    refused = _post(server, "/chat/completions", headers, content=BODY)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "origin_not_allowed" and "server.allowed_origins" in error["message"]
    assert "access-control-allow-origin" not in refused.headers
    # Nor may it rewrite a stored completion.
    update = _post(server, "/chat/completions/any-id", headers, content=b'{"metadata": {}}')
    assert update.status_code == 403
    assert upstream.calls == before


def test_a_rebound_domain_is_refused_and_a_listed_or_local_name_is_not(
    server: ServerHandle,
) -> None:
    port = server.url.rsplit(":", 1)[1]
    refused = httpx.get(server.base_url + "/chat/completions", headers={"Host": "evil.example"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "host_not_allowed"
    for host in ("localhost", f"localhost:{port}", "gateway.internal", "[::1]", "10.0.0.7"):
        answer = httpx.get(server.base_url + "/models", headers={"Host": host})
        assert answer.status_code == 200, host


def _preflight(server: ServerHandle, origin: str, **asked: str) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    headers.update({f"Access-Control-Request-{k.replace('_', '-')}": v for k, v in asked.items()})
    return httpx.options(server.base_url + "/chat/completions", headers=headers)


@pytest.mark.parametrize("origin", [TRUSTED, "http://localhost:3000", "http://127.0.0.1:8080"])
def test_a_trusted_page_gets_cors_answers(server: ServerHandle, origin: str) -> None:
    preflight = _preflight(server, origin, Headers="authorization, content-type")
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    # Chromium's question before a public page calls a private address.
    private = _preflight(server, origin, Private_Network="true")
    assert private.status_code == 200
    assert private.headers["access-control-allow-private-network"] == "true"
    headers = {"Origin": origin, "Content-Type": "application/json"}
    answer = _post(server, "/chat/completions", headers, content=BODY)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert answer.headers["access-control-allow-origin"] == "*"
    # Each answer has its request's id, once; a page may read it.
    for each in (preflight, private, answer):
        assert len(each.headers.get_list("x-request-id")) == 1
    assert preflight.headers["x-request-id"] != answer.headers["x-request-id"]
    assert "x-request-id" in answer.headers["access-control-expose-headers"]


def test_sdks_send_no_origin_and_pass(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "echo: hi"


def test_with_api_keys_the_host_is_not_checked_and_any_page_may_try(
    upstream: FakeOpenAI,
) -> None:
    # A browser holds no key unless its user gave it one: a rebound page gets a 401
    # anyway, a proxy in front that passes its own Host on keeps working, and a hosted
    # chat app the user gave a key gets CORS answers.
    config = {"server": {"api_keys": ["sk-k"]}, "providers": [upstream.provider_config()]}
    with thread_server(config) as handle:
        headers = {"Host": "api.example.com", "Authorization": "Bearer sk-k"}
        assert httpx.get(handle.base_url + "/models", headers=headers).status_code == 200
        page = {"Origin": "https://chat.example", "Authorization": "Bearer sk-k"}
        answer = httpx.get(handle.base_url + "/models", headers=page)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
        keyless = httpx.get(handle.base_url + "/models", headers={"Origin": "https://x.example"})
        assert keyless.status_code == 401
