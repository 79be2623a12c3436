"""The fake provider upstream, exercised over real HTTP."""

from __future__ import annotations

import copy
import json
import threading
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from tests.support.recorded_upstream import (
    RecordedUpstream,
    canonical_body,
    exchanges_for,
    recordings_root,
)

from switchyard.recording.llama_stack import RecordedExchange, load_exchange
from switchyard.recording.sse import DONE, SSEParser

pytestmark = pytest.mark.skipif(
    not recordings_root().is_dir(), reason=f"no recordings at {recordings_root()}"
)

ROOT = recordings_root()


def _by_name(exchanges: list[RecordedExchange], name: str) -> RecordedExchange:
    (found,) = [exchange for exchange in exchanges if Path(exchange.source).name == name]
    return found


@pytest.fixture
async def fireworks() -> AsyncIterator[RecordedUpstream]:
    upstream = RecordedUpstream(exchanges_for("fireworks"))
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def test_exchanges_for_loads_one_provider() -> None:
    exchanges = exchanges_for("together")
    assert len(exchanges) == 41
    assert {exchange.provider for exchange in exchanges} == {"together"}
    # a fresh list each time: callers may filter it in place
    assert exchanges_for("together") is not exchanges


def test_exchanges_for_unknown_provider() -> None:
    with pytest.raises(FileNotFoundError):
        exchanges_for("no-such-provider")


def test_recordings_root_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHYARD_RECORDINGS", str(tmp_path))
    assert recordings_root() == tmp_path


def test_canonical_body_drops_recorder_artifacts() -> None:
    assert canonical_body({"a": 1, "extra_body": {}}) == {"a": 1}
    assert canonical_body({"a": 1.0, "extra_body": {"guided_choice": ["x"]}}) == {
        "a": 1,
        "guided_choice": ["x"],
    }


def test_url_requires_start() -> None:
    with pytest.raises(RuntimeError):
        _ = RecordedUpstream([]).url


@pytest.mark.parametrize("prefix", ["/v1", "/inference/v1", "/v1/v1", "/serving-endpoints/v1", ""])
async def test_non_stream_json_answer(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession, prefix: str
) -> None:
    exchange = load_exchange(ROOT / "fireworks" / "901b5e7db4aa.json")
    assert exchange.body is not None and exchange.events is None
    async with session.post(
        f"{fireworks.url}{prefix}/chat/completions",
        json=exchange.body,
        headers={"Authorization": "Bearer fw-key"},
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == exchange.response
    assert fireworks.requests == [("POST", f"{prefix}/chat/completions", exchange.body)]
    assert fireworks.auth_headers == ["Bearer fw-key"]


async def test_embeddings_and_key_order_do_not_matter(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    exchange = load_exchange(ROOT / "fireworks" / "1c0a34fa2e0c.json")
    assert exchange.body is not None
    reordered = dict(reversed(list(exchange.body.items())))
    async with session.post(f"{fireworks.url}/v1/embeddings", json=reordered) as response:
        assert response.status == 200
        assert await response.json() == exchange.response
    assert fireworks.auth_headers == [None]


async def test_stream_arrives_in_several_chunks_and_ends_with_done(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    exchange = load_exchange(ROOT / "fireworks" / "e22f98c05933.json")
    assert exchange.events is not None and len(exchange.events) == 40
    parser = SSEParser()
    payloads: list[bytes] = []
    chunks = 0
    async with session.post(
        f"{fireworks.url}/inference/v1/chat/completions", json=exchange.body
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert response.headers.get("Transfer-Encoding") == "chunked"
        async for chunk in response.content.iter_any():
            chunks += 1
            payloads.extend(parser.feed(chunk))
    payloads.extend(parser.flush())
    assert chunks > 1
    assert payloads[-1] == DONE
    assert [orjson.loads(payload) for payload in payloads[:-1]] == exchange.events


async def test_stream_wire_format_is_compact_data_lines(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    exchange = load_exchange(ROOT / "fireworks" / "25649d730247.json")
    async with session.post(f"{fireworks.url}/v1/chat/completions", json=exchange.body) as resp:
        raw = await resp.read()
    assert exchange.events is not None
    expected = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in exchange.events)
    assert raw == expected + b"data: [DONE]\n\n"


async def test_model_list_is_the_largest_recorded(
    session: aiohttp.ClientSession,
) -> None:
    upstream = RecordedUpstream(exchanges_for("ollama"))
    async with upstream, session.get(f"{upstream.url}/v1/models") as response:
        assert response.status == 200
        body = await response.json()
    assert body["object"] == "list"
    assert len(body["data"]) == 9
    assert all("__type__" not in model for model in body["data"])
    assert upstream.requests == [("GET", "/v1/models", None)]


async def test_models_override_is_served_verbatim(session: aiohttp.ClientSession) -> None:
    bare = [{"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo-Free", "object": "model"}]
    upstream = RecordedUpstream(exchanges_for("together"), models_override=bare)
    async with upstream, session.get(f"{upstream.url}/v1/models") as response:
        assert response.status == 200
        assert await response.json() == bare


async def test_no_model_list_recorded_is_404(session: aiohttp.ClientSession) -> None:
    upstream = RecordedUpstream(exchanges_for("together"))
    async with upstream, session.get(f"{upstream.url}/v1/models") as response:
        assert response.status == 404
        assert "error" in await response.json()


async def test_miss_is_400_naming_the_differing_keys(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    exchange = load_exchange(ROOT / "fireworks" / "901b5e7db4aa.json")
    body = copy.deepcopy(exchange.body)
    assert body is not None
    body["temperature"] = 0.123
    async with session.post(f"{fireworks.url}/v1/chat/completions", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "no recording matches" in error["message"]
    assert "901b5e7db4aa.json" in error["message"]
    assert "temperature" in error["message"]
    assert "messages:" not in error["message"]


async def test_miss_on_an_endpoint_without_recordings(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{fireworks.url}/v1/responses", json={"model": "m"}) as response:
        assert response.status == 400
        assert "no recording matches" in (await response.json())["error"]["message"]


async def test_recorded_error_is_replayed_with_its_status(
    session: aiohttp.ClientSession,
) -> None:
    name = "28a43dc80443ccae98eee165c58522090fd6f0637031153b0105399093d39c52.json"
    exchange = load_exchange(ROOT / "ollama" / name)
    async with RecordedUpstream([exchange]) as upstream:
        url = f"{upstream.url}/v1/chat/completions"
        async with session.post(url, json=exchange.body) as response:
            assert response.status == 400
            assert await response.json() == {
                "error": {
                    "message": "invalid image input",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }


async def test_identical_requests_replay_in_recorded_order_then_loop(
    session: aiohttp.ClientSession,
) -> None:
    # Recorded twice: once with the recorder's "extra_body": {} artifact, once without.
    ollama = exchanges_for("ollama")
    with_artifact = _by_name(
        ollama, "f8d0f5a82750f890c97d61233f0ff3cfeb5c1de8f9ea9a621d2106c673225960.json"
    )
    plain = _by_name(
        ollama, "10d6c5e40b605412566675be517b6e4952c1bce8cf0c0d3f0402606c092a6080.json"
    )
    assert with_artifact.body is not None and with_artifact.body.get("extra_body") == {}
    assert canonical_body(with_artifact.body) == plain.body
    # Two distinct answers in a chosen order, so the order check cannot pass by accident.
    first = _with_text(plain, "first")
    second = _with_text(with_artifact, "second")
    async with RecordedUpstream([first, second]) as upstream:
        seen = []
        for _ in range(3):
            async with session.post(f"{upstream.url}/v1/completions", json=plain.body) as r:
                assert r.status == 200
                seen.append((await r.json())["choices"][0]["text"])
    assert seen == ["first", "second", "first"]


def _with_text(exchange: RecordedExchange, text: str) -> RecordedExchange:
    response = copy.deepcopy(exchange.response)
    response["choices"][0]["text"] = text
    return RecordedExchange(
        provider=exchange.provider,
        source=exchange.source,
        method=exchange.method,
        endpoint=exchange.endpoint,
        url=exchange.url,
        body=exchange.body,
        status=exchange.status,
        response=response,
        events=None,
        test_id=exchange.test_id,
    )


async def test_invalid_json_body_is_400(
    fireworks: RecordedUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{fireworks.url}/v1/chat/completions", data=b"{nope") as r:
        assert r.status == 400
        assert "error" in await r.json()


def test_runs_in_a_background_thread() -> None:
    exchange = load_exchange(ROOT / "fireworks" / "901b5e7db4aa.json")
    upstream = RecordedUpstream([exchange])
    upstream.start_in_thread()
    try:
        request = urllib.request.Request(
            f"{upstream.url}/v1/chat/completions",
            data=json.dumps(exchange.body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer t"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == exchange.response
    finally:
        upstream.stop_thread()
    assert upstream.auth_headers == ["Bearer t"]
    assert not any(thread.name == "recorded-upstream" for thread in threading.enumerate())
