"""Every bad input gets OpenAI's error shape with the right status; the server survives."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.server import ServerHandle, free_port, thread_server

MESSAGES = [{"role": "user", "content": "hi"}]
PROVIDER_KEY = "sk-provider-secret-4c1d"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream(slow_seconds=3.0).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(upstream: FaultyUpstream) -> Iterator[ServerHandle]:
    config = {
        "server": {"max_body_bytes": 100_000},
        "providers": [
            {
                "id": "up",
                "type": "openai_compatible",
                "base_url": upstream.url + "/v1",
                "api_key": PROVIDER_KEY,
                "max_retries": 0,
                "timeout": 1.0,
            },
            {
                "id": "retrying",
                "type": "openai_compatible",
                "base_url": upstream.url + "/v1",
                "max_retries": 2,
                "discover": False,
            },
            {
                "id": "down",
                "type": "openai_compatible",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "max_retries": 0,
                "connect_timeout": 1.0,
            },
            {
                "id": "together",
                "type": "together",
                "base_url": upstream.url + "/v1",
                "max_retries": 0,
            },
            {"id": "groq", "type": "groq", "base_url": upstream.url + "/v1", "max_retries": 0},
            {"id": "st", "type": "sentence-transformers"},
        ],
        "models": [
            {
                "id": "declared-chat",
                "provider_id": "up",
                "provider_model_id": "ok",
                "model_type": "llm",  # stated: it refuses /v1/embeddings
            }
        ],
    }
    with thread_server(config) as handle:
        yield handle


def _post(server: ServerHandle, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, timeout=10, **kwargs)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "up/ok"}', "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "up/ok", "messages": []}', "messages"),
        (
            b'{"model": "up/ok", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages[0].role",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": ["user"], "content": "x"}]}',
            "messages[0].role",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": 7}]}',
            "messages[0].content",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": [{"type": ["video"]}]}]}',
            "messages[0].content[0]",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "tool", "content": "x"}]}',
            "messages[0].tool_call_id",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "temperature": 3}',
            "temperature",
        ),
        (b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "n": "2"}', "n"),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}',
            "stream_options",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "response_format": {"json_schema": {}}}',
            "response_format",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}',
            "tools",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 50}',
            "top_logprobs",
        ),
        (
            b'{"model": "up/ok", "messages": [{"role": "user", "content": "x"}], "stop": ["a", 1]}',
            "stop",
        ),
    ],
)
def test_malformed_chat_requests_are_400(
    server: ServerHandle, content: bytes, param: str | None
) -> None:
    error = _error(_post(server, "/chat/completions", content=content), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "up/ok", "prompt": []}, "prompt"),
        ({"model": "up/ok", "prompt": "x", "logprobs": 6}, "logprobs"),
        ({"model": "up/ok", "prompt": "x", "echo": "no"}, "echo"),
        ({"model": "up/ok"}, "prompt"),
    ],
)
def test_malformed_completions_are_400(
    server: ServerHandle, body: dict[str, Any], param: str
) -> None:
    assert _error(_post(server, "/completions", json=body), 400)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "st/all-MiniLM-L6-v2", "input": []}, "input"),
        ({"model": "st/all-MiniLM-L6-v2", "input": ""}, "input"),
        ({"model": "st/all-MiniLM-L6-v2", "input": [1.5]}, "input"),
        (
            {"model": "st/all-MiniLM-L6-v2", "input": "x", "encoding_format": "hex"},
            "encoding_format",
        ),
        ({"model": "st/all-MiniLM-L6-v2", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_malformed_embeddings_are_400(
    server: ServerHandle, body: dict[str, Any], param: str
) -> None:
    assert _error(_post(server, "/embeddings", json=body), 400)["param"] == param


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_body_not_in_utf8_is_400_saying_so(server: ServerHandle, encoding: str) -> None:
    text = '{"model": "up/ok", "messages": [{"role": "user", "content": "caf\u00e9"}]}'
    headers = {"Content-Type": "application/json"}
    response = _post(server, "/chat/completions", content=text.encode(encoding), headers=headers)
    assert "not UTF-8" in _error(response, 400)["message"]


def test_unknown_model_is_404_with_a_way_forward(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="nowhere/gpt-9", messages=MESSAGES)  # type: ignore[arg-type]
        assert info.value.code == "model_not_found"
        assert "GET /v1/models" in info.value.message
        assert (
            _error(httpx.get(server.base_url + "/models/nowhere/gpt-9"), 404)["code"]
            == "model_not_found"
        )


def test_model_of_the_wrong_type_is_400(server: ServerHandle) -> None:
    chat = {"model": "st/all-MiniLM-L6-v2", "messages": MESSAGES}
    error = _error(_post(server, "/chat/completions", json=chat), 400)
    assert "embedding model" in error["message"] and "/v1/embeddings" in error["message"]
    embed = {"model": "declared-chat", "input": "x"}
    error = _error(_post(server, "/embeddings", json=embed), 400)
    assert "language model" in error["message"]


def test_a_listed_model_not_known_as_an_embedding_model_is_tried_for_embeddings(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    # The provider's list gave "ok" no type, and its name no hint: its provider decides.
    listed = httpx.get(server.base_url + "/models/up/ok").json()
    assert listed["model_type"] == "llm"
    response = _post(server, "/embeddings", json={"model": "up/ok", "input": "x"})
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["embedding"] == [0.5, -0.25, 1.0]
    assert upstream.bodies[-1] == {"model": "ok", "input": "x"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_stops_the_providers_work(
    server: ServerHandle, upstream: FaultyUpstream, stream: bool
) -> None:
    # The client's SDK gives up (and would retry): the provider's generation must stop,
    # not run on, three times over, into a stored completion nobody got.
    before = upstream.abandoned
    body = {"model": "retrying/watched", "messages": MESSAGES, "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/chat/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 2.5
    while upstream.abandoned == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.abandoned == before + 1
    listed = httpx.get(server.base_url + "/chat/completions", params={"model": body["model"]})
    assert listed.json()["data"] == []


def test_half_a_surrogate_pair_is_replaced_not_refused(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    # A JavaScript client that cut a text inside an emoji: JSON.stringify escapes the
    # half it kept. Valid JSON, which orjson alone would refuse.
    content = b'{"model": "up/ok", "metadata": {"probe": "surrogate"}, "stop": ["a", "b", '
    content += b'"c", "d", "e"], "messages": [{"role": "user", "content": "hi \\ud83d"}]}'
    response = _post(server, "/chat/completions", content=content)
    assert response.status_code == 200, response.text
    assert upstream.bodies[-1]["messages"][0]["content"] == "hi \ufffd"
    assert len(upstream.bodies[-1]["stop"]) == 5  # OpenAI's limit is 4, the provider's more
    listed = httpx.get(server.base_url + "/chat/completions?metadata[probe]=surrogate").json()
    (stored,) = listed["data"]
    assert stored["input_messages"][0]["content"] == "hi \ufffd"
    # Beside what orjson cannot take either (an integer past 64 bits), a 400, not a 500.
    huge = content.replace(b'"stop"', b'"seed": 100000000000000000000000, "stop"')
    _error(_post(server, "/chat/completions", content=huge), 400)


def test_vectors_of_another_size_than_asked_are_refused(server: ServerHandle) -> None:
    # The upstream answers 3 floats whatever is asked: fewer than asked is no answer either.
    body = {"model": "up/ok", "input": "x"}
    assert _post(server, "/embeddings", json={**body, "dimensions": 3}).status_code == 200
    for asked in (2, 8):
        error = _error(_post(server, "/embeddings", json={**body, "dimensions": asked}), 400)
        assert error["param"] == "dimensions"
        assert f"'dimensions' {asked} for 'ok' (its vectors have 3)" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [
        (
            "/chat/completions",
            {"model": "together/m", "messages": MESSAGES, "n": 2, "stream": True},
            "n",
            "while streaming",
        ),
        ("/chat/completions", {"model": "groq/m", "messages": MESSAGES, "n": 3}, "n", "n=3"),
        ("/completions", {"model": "groq/m", "prompt": "x"}, "prompt", "/v1/completions"),
        (
            "/embeddings",
            {"model": "together/m2", "input": "x", "dimensions": 8},
            "dimensions",
            "dimensions",
        ),
    ],
)
def test_parameters_a_provider_refuses_are_named(
    server: ServerHandle, path: str, body: dict[str, Any], param: str, words: str
) -> None:
    error = _error(_post(server, path, json=body), 400)
    assert error["param"] == param
    assert words in error["message"] and body["model"].split("/")[0] in error["message"]


def test_together_embeddings_drop_user_silently(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    response = _post(
        server, "/embeddings", json={"model": "together/e", "input": "x", "user": "u1"}
    )
    assert response.status_code == 200
    assert "user" not in upstream.bodies[-1]


@pytest.mark.parametrize(
    ("model", "status", "kind"),
    [
        ("up/status-400", 400, "test_error"),
        ("up/status-404", 404, "test_error"),
        ("up/status-429", 429, "test_error"),
        ("up/status-500", 502, "upstream_error"),
        ("up/status-401", 502, "upstream_error"),
        ("up/slow", 504, "upstream_timeout"),
        ("down/anything", 503, "upstream_unavailable"),
    ],
)
def test_upstream_failures_map_to_gateway_statuses(
    server: ServerHandle, model: str, status: int, kind: str
) -> None:
    error = _error(
        _post(server, "/chat/completions", json={"model": model, "messages": MESSAGES}), status
    )
    assert error["type"] == kind
    assert model.split("/", maxsplit=1)[0] in error["message"]


def test_a_providers_key_refused_points_at_the_config_not_the_clients_key(
    server: ServerHandle,
) -> None:
    body = {"model": "up/status-401", "messages": MESSAGES}
    error = _error(_post(server, "/chat/completions", json=body), 502)
    assert "api_key of provider 'up'" in error["message"]
    # The provider quoted the key it refused, Switchyard's own: not passed on.
    assert "incorrect API key provided: Bearer ***" in error["message"]
    assert PROVIDER_KEY not in error["message"]
    # The provider's code and param (invalid_api_key, temperature) would send the client
    # after its own key.
    assert error["code"] is None and error["param"] is None


def test_the_clients_sdk_does_not_retry_what_switchyard_retried_or_cannot_help(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    # openai-python retries a 5xx twice by itself: on top of Switchyard's two retries,
    # nine calls to the provider for one request.
    before = upstream.calls.get("status-500", 0)
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=2) as client:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="retrying/status-500", messages=MESSAGES)  # type: ignore[arg-type]
        assert info.value.response.headers["x-should-retry"] == "false"
        assert upstream.calls["status-500"] - before == 3  # Switchyard's try and 2 retries
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="up/status-401", messages=MESSAGES)  # type: ignore[arg-type]
        assert info.value.response.headers["x-should-retry"] == "false"
    for status in (402, 501):  # payment required, not implemented: no retry helps
        refused = _post(
            server, "/chat/completions", json={"model": f"up/status-{status}", "messages": MESSAGES}
        )
        assert refused.status_code == 502 and refused.headers["x-should-retry"] == "false"
    # No retries of its own (max_retries: 0): the client's SDK may retry.
    unretried = _post(
        server, "/chat/completions", json={"model": "up/status-500", "messages": MESSAGES}
    )
    assert unretried.status_code == 502 and "x-should-retry" not in unretried.headers


def test_a_proxys_html_page_is_not_quoted_to_the_client(server: ServerHandle) -> None:
    body = {"model": "up/html-502", "messages": MESSAGES}
    error = _error(_post(server, "/chat/completions", json=body), 502)
    assert "an HTML page (in Switchyard's log)" in error["message"]
    assert "10.1.2.3" not in error["message"]


def test_an_error_in_a_200_answer_is_a_502_and_not_stored(server: ServerHandle) -> None:
    body = {"model": "up/error-200", "messages": MESSAGES, "metadata": {"probe": "error-200"}}
    error = _error(_post(server, "/chat/completions", json=body), 502)
    assert "model overloaded" in error["message"] and "provider 'up'" in error["message"]
    assert error["type"] == "upstream_error"
    # The list waits for this worker's accepted writes: a stored row would be seen.
    listed = httpx.get(server.base_url + "/chat/completions?metadata[probe]=error-200")
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_retries_honour_retry_after(server: ServerHandle, upstream: FaultyUpstream) -> None:
    started = time.monotonic()
    response = _post(
        server, "/chat/completions", json={"model": "retrying/flaky", "messages": MESSAGES}
    )
    assert response.status_code == 200
    assert upstream.calls["flaky"] == 2
    # retry-after-ms: 1200 was asked for; the default first backoff would be 0.5 s.
    assert time.monotonic() - started >= 1.2


def test_rate_limits_pass_the_providers_retry_after(server: ServerHandle) -> None:
    response = _post(
        server, "/chat/completions", json={"model": "up/status-429", "messages": MESSAGES}
    )
    assert _error(response, 429)["type"] == "test_error"
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("up/break-stream", ["first"]),
        ("up/break-batch", ["first"]),
        ("up/cut-stream", ["first"]),
        # The body's end is the connection closing, with no finish_reason or [DONE]: it
        # may have been cut anywhere.
        ("up/close-cut-stream", ["first"]),
        # A chunked body ended cleanly but early (a proxy in front of a backend that
        # failed): no finish_reason, no [DONE].
        ("up/unfinished-stream", ["first"]),
        # Two choices side by side (n=2): the first finished, the second was cut.
        ("up/close-cut-n2-stream", ["first", "other", " second"]),
        ("up/empty-stream", []),
        ("up/string-error-stream", ["first"]),  # {"error": "..."}, then [DONE]
        ("up/only-done-stream", []),  # [DONE] and nothing else
        ("up/garbled-stream", ["first"]),
        ("up/array-stream", ["first"]),
    ],
)
def test_errors_after_the_first_byte_end_the_stream_with_an_error_event(
    server: ServerHandle, model: str, sent: list[str]
) -> None:
    unstored = _unfinished_streams(server)
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        received = []
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            ):  # type: ignore[arg-type]
                received.append(chunk.choices[0].delta.content)
        assert received == sent
        assert "provider 'up'" in info.value.message
    assert _unfinished_streams(server) == unstored + 1  # and not stored as if complete


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("up/garbled-stream", "answered with something that is not JSON"),
        ("up/array-stream", "answered with JSON that is not an object"),
        ("up/null-stream", "answered with JSON that is not an object"),
        ("up/string-error-stream", "failed mid-stream: model overloaded"),
    ],
)
def test_an_event_that_is_not_a_chunk_is_named_in_the_error(
    server: ServerHandle, model: str, said: str
) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError) as info:
            list(stream)
    assert said in info.value.message


def test_an_error_event_keeps_the_providers_code(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="up/coded-error-stream", messages=MESSAGES, stream=True
        )  # type: ignore[arg-type]
        with pytest.raises(openai.APIError) as info:
            list(stream)
    assert "rate limited" in info.value.message
    assert (info.value.code, info.value.type) == ("rate_limit_exceeded", "upstream_error")


def _unfinished_streams(server: ServerHandle) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("switchyard_store_unfinished"))
    return float(line.split()[-1])


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("up/finished-stream", ["first", " second"]),
        ("up/close-finished-stream", ["first", " second"]),
        ("up/empty-data-stream", ["first", " second"]),
        ("up/short-done-stream", ["first"]),
    ],
)
def test_a_stream_that_ended_whole_may_end_without_done(
    server: ServerHandle, model: str, sent: list[str]
) -> None:
    unstored = _unfinished_streams(server)
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert [c.choices[0].delta.content for c in stream] == sent
    assert _unfinished_streams(server) == unstored  # stored as complete


def test_a_stream_answered_with_one_json_document_is_502(server: ServerHandle) -> None:
    body = {"model": "up/json-stream", "messages": MESSAGES, "stream": True}
    error = _error(_post(server, "/chat/completions", json=body), 502)
    assert error["type"] == "upstream_error"
    assert "Server-Sent Events" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "up/ok", "messages": MESSAGES}),
        ("/chat/completions", {"model": "up/ok", "messages": MESSAGES, "stream": True}),
        ("/embeddings", {"model": "up/text-embed", "input": "x"}),
    ],
)
def test_json_nested_too_deeply_to_forward_is_400(
    server: ServerHandle, path: str, body: dict[str, Any]
) -> None:
    # orjson reads 1,024 levels but writes 254: a body in between is read, then refused.
    deep = orjson.dumps(body)[:-1] + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    headers = {"Content-Type": "application/json"}
    error = _error(_post(server, path, content=deep, headers=headers), 400)
    assert error["type"] == "invalid_request_error"
    assert "less deeply" in error["message"]


def test_too_large_is_413(server: ServerHandle) -> None:
    big = {"model": "up/ok", "messages": [{"role": "user", "content": "x" * 200_000}]}
    error = _error(_post(server, "/chat/completions", json=big), 413)
    assert "max_body_bytes" in error["message"]


def test_unknown_routes_and_methods(server: ServerHandle) -> None:
    _error(httpx.get(server.url + "/v1/nothing-here"), 404)
    refused = httpx.delete(server.base_url + "/models")
    _error(refused, 405)
    assert refused.headers["allow"] == "GET, HEAD"
    refused = httpx.put(server.base_url + "/chat/completions/some-id")
    assert "use DELETE, GET, HEAD, POST" in _error(refused, 405)["message"]
    assert refused.headers["allow"] == "DELETE, GET, HEAD, POST"
    for method, path in [("POST", "/chat/completions/"), ("GET", "/chat/completions/x/")]:
        response = httpx.request(method, server.base_url + path, json={})
        assert "trailing slash" in _error(response, 404)["message"]  # not an empty redirect
    for path, meant in [
        ("/chat/completions", "/v1/chat/completions"),  # a base_url without /v1
        ("/v1/v1/embeddings", "/v1/embeddings"),  # and with it twice
    ]:
        error = _error(httpx.post(server.url + path, json={}), 404)
        assert f"did you mean {meant}?" in error["message"]
    assert "did you mean" not in _error(httpx.get(server.url + "/v1/nothing-here"), 404)["message"]
    for path in ["/models/", "/models/up/ok/"]:
        error = _error(httpx.get(server.base_url + path), 404)
        assert "trailing slash" in error["message"] and error["code"] == "model_not_found"
        assert error["type"] == "invalid_request_error"  # as for any unknown model


def test_a_stream_answers_at_once_and_a_client_leaving_before_any_event_frees_the_provider(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    # The provider sends headers and then nothing but SSE comments (a model thinking).
    body = {"model": "up/silent-stream", "messages": MESSAGES, "stream": True}
    url = server.base_url + "/chat/completions"
    before = upstream.aborted
    with httpx.Client(timeout=5) as client, client.stream("POST", url, json=body) as response:
        assert response.status_code == 200  # the head came before any event
        assert response.headers["content-type"].startswith("text/event-stream")
    _provider_stream_closed(server, upstream, before)


def test_a_client_leaving_before_the_providers_answer_frees_the_provider_once_it_answers(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    # The client leaves while the provider has not answered yet: the provider's request
    # is given up (its connection closed), or the stream that then starts is for
    # nobody and must be closed, not relayed into a dead connection.
    body = orjson.dumps({"model": "up/late-endless", "messages": MESSAGES, "stream": True})
    before = upstream.aborted
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        time.sleep(0.1)
    _provider_stream_closed(server, upstream, before)


def _provider_stream_closed(server: ServerHandle, upstream: FaultyUpstream, before: int) -> None:
    """The provider saw its stream aborted, or its connection closed before it began
    (once, within 5 s, not after 10 s of generating for nobody) and the server is fine."""
    deadline = time.monotonic() + 5
    while upstream.aborted == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.aborted == before + 1
    assert httpx.get(server.base_url + "/health").status_code == 200


def test_a_thousand_malformed_requests_leave_it_healthy(server: ServerHandle) -> None:
    bad = [b"{", b"null", b'{"model": 1}', b'{"model": "x", "messages": "no"}', b"\xff\xfe"]
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for i in range(1000):
            response = client.post("/chat/completions", content=bad[i % len(bad)])
            assert response.status_code in (400, 404)
            assert "error" in response.json()
        assert client.get("/health").json() == {"status": "OK"}
        ok = client.post("/chat/completions", json={"model": "up/ok", "messages": MESSAGES})
        assert ok.json()["choices"][0]["message"]["content"] == "fine"


def test_a_client_leaving_mid_stream_closes_the_providers_stream(
    server: ServerHandle, upstream: FaultyUpstream
) -> None:
    body = {"model": "up/endless", "messages": MESSAGES, "stream": True}
    url = server.base_url + "/chat/completions"
    before = upstream.aborted
    with httpx.Client(timeout=10) as client, client.stream("POST", url, json=body) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    # leaving the block closed the connection after one event
    _provider_stream_closed(server, upstream, before)
