"""``switchyard run --record-mode``: record against a local provider, replay without it.

The provider is ``tests/support/recorded_upstream.py`` (real HTTP on 127.0.0.1); the
server is the real CLI in a child process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml
from tests.support.recorded_upstream import RecordedUpstream, exchanges_for, recordings_root
from tests.support.server import ServerHandle, process_server

from switchyard.recording.files import load_cassette
from switchyard.recording.sse import SSEParser

pytestmark = pytest.mark.skipif(not recordings_root().is_dir(), reason="no shared recordings")

SECRET = "sk-e2e-provider-SECRET"
MODEL = "together/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free"
SUN = "What's the name of the Sun in latin?"


@pytest.fixture
def upstream() -> Iterator[RecordedUpstream]:
    server = RecordedUpstream(exchanges_for("together") + exchanges_for("ollama"))
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def _config(base_url: str) -> dict[str, Any]:
    providers = [
        {"id": name, "type": name, "api_key": SECRET, "base_url": base_url + "/v1"}
        for name in ("together", "ollama")
    ]
    return {"providers": providers, "store": {"enabled": False}}


def _server(tmp_path: Path, base_url: str, mode: str, cassettes: Path, *extra: str) -> Any:
    args = ("--record-mode", mode, "--cassettes", str(cassettes), *extra)
    return process_server(_config(base_url), tmp_path, args=args)


def _sse(server: ServerHandle, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream as the client got it: each event's JSON, in order, without our id."""
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        parser, events = SSEParser(), []
        for chunk in r.iter_bytes():
            events += parser.feed(chunk)
    assert events[-1] == b"[DONE]"
    parsed = [orjson.loads(e) for e in events[:-1]]
    return [{k: v for k, v in e.items() if k != "id"} for e in parsed]


def _client(server: ServerHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="client-key", max_retries=0)


def _exercise(server: ServerHandle) -> dict[str, Any]:
    """The same calls in record and in replay; returns what the client saw."""
    stream_body = {"model": MODEL, "messages": [{"role": "user", "content": SUN}], "stream": True}
    seen: dict[str, Any] = {"stream": _sse(server, stream_body)}
    with _client(server) as client:
        chat = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Which planet do humans live on?"}],
            stream=False,
        )
        seen["chat"] = chat.choices[0].message.content
        embedding = client.embeddings.create(
            model="ollama/all-minilm:l6-v2",
            input="Test user parameter",
            encoding_format="float",
            user="test-user-123",
        )
        seen["embedding"] = embedding.data[0].embedding[:5]
        seen["models"] = sorted(m.id for m in client.models.list())
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "not recorded upstream"}]
            )
        seen["error"] = caught.value.message
    return seen


def test_record_writes_no_secret_and_replay_reproduces_the_events(
    tmp_path: Path, upstream: RecordedUpstream
) -> None:
    cassettes = tmp_path / "cassettes"
    with _server(tmp_path, upstream.url, "record", cassettes) as server:
        recorded = _exercise(server)
    assert all(auth == f"Bearer {SECRET}" for auth in upstream.auth_headers)
    assert "Sol" in "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in recorded["stream"] if c["choices"]
    )
    assert "ollama/all-minilm:l6-v2" in recorded["models"]
    assert "no recording matches" in recorded["error"]  # the fake provider's own 400

    text = (cassettes / "default.json").read_text()
    assert SECRET not in text
    assert "authorization" not in text.lower()
    cassette = load_cassette(cassettes / "default.json")
    kinds = sorted(
        f"{i.provider} {i.request.method} {i.request.path}" for i in cassette.interactions
    )
    assert kinds == [
        "ollama GET /v1/models",
        "ollama POST /v1/embeddings",
        "together GET /v1/models",
        "together POST /v1/chat/completions",
        "together POST /v1/chat/completions",
        "together POST /v1/chat/completions",
    ]

    upstream.stop_thread()  # replay must not need it
    with _server(tmp_path, upstream.url, "replay", cassettes) as server:
        replayed = _exercise(server)
    assert replayed == recorded
    assert len(replayed["stream"]) > 2


def test_record_mode_with_two_workers_keeps_every_interaction(
    tmp_path: Path, upstream: RecordedUpstream
) -> None:
    prompts = [
        e.body["messages"]
        for e in exchanges_for("together")
        if e.endpoint == "/v1/chat/completions"
        and set(e.body) <= {"model", "messages", "stream"}
        and not e.is_stream
    ]
    assert len(prompts) >= 6
    cassettes = tmp_path / "cassettes"

    def ask(server: ServerHandle, messages: list[Any]) -> str | None:
        with _client(server) as client:
            answer = client.chat.completions.create(model=MODEL, messages=messages, stream=False)
            return answer.choices[0].message.content

    with (
        _server(tmp_path, upstream.url, "record", cassettes, "--workers", "2") as server,
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda m: ask(server, m), prompts))
    chats = [
        i
        for i in load_cassette(cassettes / "default.json").interactions
        if i.request.path == "/v1/chat/completions"
    ]
    assert len(chats) == len(prompts)
    sort = orjson.OPT_SORT_KEYS
    assert sorted(orjson.dumps(c.request.body["messages"], option=sort) for c in chats) == sorted(
        orjson.dumps(m, option=sort) for m in prompts
    )

    # A new record run starts the cassette afresh.
    with _server(tmp_path, upstream.url, "record", cassettes) as server:
        ask(server, prompts[0])
    paths = [i.request.path for i in load_cassette(cassettes / "default.json").interactions]
    assert paths.count("/v1/chat/completions") == 1
    assert answers[0] is not None


@pytest.mark.parametrize(
    ("how", "says"),
    [
        (("--record-mode", "recrod"), "Invalid value for '--record-mode'"),
        (("--config", "CONFIG"), "recording.mode"),
    ],
)
def test_a_misspelled_mode_fails_at_start(tmp_path: Path, how: tuple[str, ...], says: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"recording": {"mode": "replya"}}))
    args = [str(config) if arg == "CONFIG" else arg for arg in how]
    result = subprocess.run(
        [sys.executable, "-m", "switchyard", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert says in result.stderr
