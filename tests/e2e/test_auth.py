"""API keys through a real server and the official openai SDK (``server/auth.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.server import ServerHandle, thread_server

from switchyard.server.auth import key_id

MODEL = "fake/gpt-fake"
MESSAGES = [{"role": "user", "content": "hi"}]
KEYS = ["sk-first-4f1c2d9e", "sk-second-8b7a6053"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    upstream: FakeOpenAI
    with fake_openai() as upstream:
        config = {"server": {"api_keys": KEYS}, "providers": [upstream.provider_config()]}
        with thread_server(config) as handle:
            yield handle


def sdk(server: ServerHandle, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


@pytest.mark.parametrize("key", KEYS)
def test_each_configured_key_is_let_through(server: ServerHandle, key: str) -> None:
    with sdk(server, key) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "echo: hi"
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert client.chat.completions.retrieve(answer.id).id == answer.id


def test_a_stored_completion_names_the_key_it_came_with(server: ServerHandle) -> None:
    made: dict[str, list[str]] = {}
    for key in KEYS:
        with sdk(server, key) as client:
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
            # Read to its end: a stream is stored once it has finished.
            chunks = list(
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            )  # type: ignore[arg-type]
            made[key] = [answer.id, chunks[0].id]
    headers = {"Authorization": f"Bearer {KEYS[1]}"}
    for key, ids in made.items():
        for completion_id in ids:
            stored = httpx.get(
                f"{server.base_url}/chat/completions/{completion_id}", headers=headers
            )
            caller = stored.json()["switchyard"]["caller"]
            assert caller == key_id(key) and caller.startswith("key-")
            assert key not in stored.text  # an id, never the key itself
    assert key_id(KEYS[0]) != key_id(KEYS[1])


@pytest.mark.parametrize("key", ["sk-wrong", KEYS[0][:-1], KEYS[0] + "x"])
def test_a_wrong_key_is_401_invalid_api_key(server: ServerHandle, key: str) -> None:
    with sdk(server, key) as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "invalid_api_key"
    assert "server.api_keys" in info.value.message


def test_the_scheme_and_spaces_around_the_key_do_not_matter(server: ServerHandle) -> None:
    for value in (f"bearer {KEYS[0]}", f"BEARER  {KEYS[0]}"):
        response = httpx.get(server.base_url + "/models", headers={"Authorization": value})
        assert response.status_code == 200, value


def test_two_authorization_headers_are_refused_whichever_holds_the_key(
    server: ServerHandle,
) -> None:
    for pair in ([KEYS[0], "sk-wrong"], ["sk-wrong", KEYS[0]]):
        headers = [("Authorization", f"Bearer {key}") for key in pair]
        response = httpx.get(server.base_url + "/models", headers=headers)
        assert response.status_code == 401
        assert "one Authorization header" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/providers"),
        ("GET", "/v1/version"),
        ("GET", "/v1/chat/completions"),
        ("GET", "/v1/chat/completions/chatcmpl-x"),
        ("DELETE", "/v1/chat/completions/chatcmpl-x"),
        ("GET", "/v1/nowhere"),
        ("GET", "/elsewhere"),
    ],
)
def test_no_key_is_401_on_every_route(server: ServerHandle, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer"}):
        response = httpx.request(method, server.url + path, headers=headers, json={})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"  # as OpenAI types it
        assert "Authorization: Bearer" in error["message"]


def test_health_metrics_and_the_openapi_document_need_no_key(server: ServerHandle) -> None:
    assert httpx.get(server.base_url + "/health").json() == {"status": "OK"}
    assert httpx.get(server.url + "/metrics").status_code == 200
    assert httpx.get(server.url + "/openapi.json").status_code == 200


def test_behind_a_root_path_the_same_paths_need_a_key(server: ServerHandle) -> None:
    # uvicorn --root-path /api puts the prefix in front of the path the check reads.
    from switchyard.server.auth import KeyCheck

    check = KeyCheck(KEYS)
    scope = {"path": "/api/v1/models", "root_path": "/api", "headers": []}
    assert check.refusal(scope) is not None
    assert check.refusal({**scope, "path": "/api/v1/health"}) is None
