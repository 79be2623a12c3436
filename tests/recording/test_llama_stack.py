"""The Llama Stack recording loader, on the real recorded files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from switchyard.recording.llama_stack import (
    ENDPOINTS,
    RecordedExchange,
    load_dir,
    load_exchange,
    normalise_path,
)

ROOT = Path(
    os.environ.get("SWITCHYARD_RECORDINGS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "recordings" / "llama-stack"
)

pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"no recordings at {ROOT}")

CHAT, COMPLETIONS, EMBEDDINGS, MODELS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
)

# provider: (total, chat, chat streaming, chat with tools, completions, completions streaming,
#            embeddings, models) -- the table of the recordings' README.
README_COUNTS = {
    "ollama": (259, 187, 97, 86, 12, 2, 52, 8),
    "together": (41, 20, 7, 3, 3, 1, 18, 0),
    "bedrock": (27, 25, 22, 0, 0, 0, 0, 2),
    "fireworks": (26, 10, 6, 2, 2, 1, 13, 1),
    "vllm": (20, 14, 2, 12, 2, 0, 0, 4),
    "databricks": (15, 8, 4, 2, 0, 0, 7, 0),
    "openai": (15, 3, 3, 0, 0, 0, 0, 12),
    "azure": (14, 12, 8, 2, 0, 0, 0, 2),
    "cerebras": (11, 8, 4, 2, 2, 1, 0, 1),
    "tgi": (10, 8, 4, 2, 2, 1, 0, 0),
    "gemini": (5, 0, 0, 0, 0, 0, 0, 5),
    "llama-cpp-server": (1, 0, 0, 0, 0, 0, 0, 1),
    "watsonx": (1, 0, 0, 0, 0, 0, 0, 1),
}


@pytest.fixture(scope="module")
def everything() -> list[RecordedExchange]:
    return load_dir(ROOT)


def _raw(path: Path) -> dict:
    return json.loads(path.read_text())


def test_load_dir_reads_every_file_sorted(everything: list[RecordedExchange]) -> None:
    assert len(everything) == 445
    sources = [exchange.source for exchange in everything]
    assert sources == sorted(sources)
    assert {exchange.provider for exchange in everything} == set(README_COUNTS)
    assert {exchange.endpoint for exchange in everything} == ENDPOINTS


def test_load_dir_of_one_provider_folder() -> None:
    exchanges = load_dir(ROOT / "fireworks")
    assert len(exchanges) == 26
    assert {exchange.provider for exchange in exchanges} == {"fireworks"}


@pytest.mark.parametrize("provider", sorted(README_COUNTS))
def test_counts_per_provider_match_the_readme(
    everything: list[RecordedExchange], provider: str
) -> None:
    mine = [exchange for exchange in everything if exchange.provider == provider]
    chat = [exchange for exchange in mine if exchange.endpoint == CHAT]
    completions = [exchange for exchange in mine if exchange.endpoint == COMPLETIONS]
    counts = (
        len(mine),
        len(chat),
        sum(exchange.events is not None for exchange in chat),
        sum("tools" in (exchange.body or {}) for exchange in chat),
        len(completions),
        sum(exchange.events is not None for exchange in completions),
        sum(exchange.endpoint == EMBEDDINGS for exchange in mine),
        sum(exchange.endpoint == MODELS for exchange in mine),
    )
    assert counts == README_COUNTS[provider]


def test_ollama_chat_filed_under_completions_is_chat() -> None:
    exchange = load_exchange(ROOT / "ollama" / "4096743baf8e.json")
    assert exchange.url == "http://localhost:11434/v1/v1/completions"
    assert exchange.endpoint == CHAT
    assert exchange.response["object"] == "chat.completion"


def test_streamed_chat() -> None:
    path = ROOT / "fireworks" / "25649d730247.json"
    exchange = load_exchange(path)
    raw = _raw(path)
    assert exchange.provider == "fireworks"
    assert exchange.source == str(path)
    assert exchange.method == "POST"
    assert exchange.endpoint == CHAT
    assert exchange.url == "https://api.fireworks.ai/inference/v1/v1/chat/completions"
    assert exchange.body == raw["request"]["body"]
    assert exchange.body["stream"] is True
    assert exchange.status == 200
    assert exchange.response is None
    assert exchange.is_stream
    assert exchange.events == [chunk["__data__"] for chunk in raw["response"]["body"]]
    assert len(exchange.events) == 11
    first = exchange.events[0]
    assert first["object"] == "chat.completion.chunk"
    # explicit nulls stay as recorded
    assert first["choices"][0]["delta"]["content"] is None
    assert "usage" in first and first["usage"] is None
    text = "".join(event["choices"][0]["delta"]["content"] or "" for event in exchange.events)
    assert "Sol" in text
    assert exchange.test_id is None


def test_json_answer_keeps_provider_extras() -> None:
    path = ROOT / "together" / "0c1f45455d3b.json"
    exchange = load_exchange(path)
    raw = _raw(path)
    assert exchange.events is None
    assert exchange.response == raw["response"]["body"]["__data__"]
    assert "seed" in json.dumps(exchange.response)


def test_model_list() -> None:
    path = ROOT / "fireworks" / "models-7d9446738fd7-d5d684a3.json"
    exchange = load_exchange(path)
    assert exchange.method == "GET"
    assert exchange.endpoint == MODELS
    assert exchange.body is None
    assert exchange.events is None
    assert exchange.response["object"] == "list"
    data = exchange.response["data"]
    assert len(data) == 37
    assert data[0]["id"] == "accounts/fireworks/models/flux-1-dev-fp8"
    assert "__type__" not in data[0]
    assert data[0]["supports_chat"] is not None  # Fireworks' extra fields survive


def test_recorded_error() -> None:
    name = "28a43dc80443ccae98eee165c58522090fd6f0637031153b0105399093d39c52.json"
    exchange = load_exchange(ROOT / "ollama" / name)
    assert exchange.status == 400
    assert exchange.events is None
    assert exchange.response == {
        "error": {
            "message": "invalid image input",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert exchange.test_id is not None
    assert "test_provider_rejects_invalid_base64_image" in exchange.test_id


def test_databricks_url_without_scheme() -> None:
    exchange = load_exchange(ROOT / "databricks" / "249b7f0ddde6.json")
    assert exchange.url == "__databricks__/serving-endpoints/v1/chat/completions"
    assert exchange.endpoint == CHAT
    assert exchange.response["choices"][0]["message"]["role"] == "assistant"


def test_provider_argument_overrides_folder_name() -> None:
    exchange = load_exchange(ROOT / "databricks" / "249b7f0ddde6.json", provider="dbx")
    assert exchange.provider == "dbx"


def test_no_wrapper_is_left_anywhere(everything: list[RecordedExchange]) -> None:
    for exchange in everything:
        assert "__type__" not in json.dumps([exchange.response, exchange.events])


def test_file_name_is_irrelevant_except_models_prefix(tmp_path: Path) -> None:
    source = ROOT / "fireworks" / "25649d730247.json"
    copy = tmp_path / "recordings" / "responses" / "whatever.json"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(source.read_bytes())
    assert load_exchange(copy).events == load_exchange(source).events
    assert load_exchange(copy).provider == "responses"


def test_nested_and_plain_bodies_are_unwrapped(tmp_path: Path) -> None:
    document = {
        "request": {
            "method": "POST",
            "url": "http://x/v1/v1/embeddings",
            "headers": {},
            "body": {"model": "m", "input": "hi"},
            "endpoint": "/v1/embeddings",
        },
        "response": {
            "body": {
                "__type__": "A",
                "__data__": {
                    "data": [{"__type__": "B", "__data__": {"embedding": [0.5], "index": 0}}],
                    "plain": {"kept": None},
                },
            },
            "is_streaming": False,
        },
    }
    path = tmp_path / "p" / "x.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    exchange = load_exchange(path)
    assert exchange.response == {
        "data": [{"embedding": [0.5], "index": 0}],
        "plain": {"kept": None},
    }
    assert exchange.provider == "p"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[]", "not a Llama Stack recording"),
        ('{"request": {}}', "not a Llama Stack recording"),
        (
            json.dumps(
                {
                    "request": {
                        "url": "http://h/api/generate",
                        "endpoint": "/api/generate",
                        "body": {},
                    },
                    "response": {"body": {}},
                }
            ),
            "unsupported endpoint",
        ),
        (
            json.dumps(
                {
                    "request": {"url": "http://h/v1/v1/chat/completions", "body": {}},
                    "response": {"body": {"x": 1}, "is_streaming": True},
                }
            ),
            "not a list",
        ),
    ],
)
def test_bad_files_raise_value_error_naming_the_file(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=fragment) as info:
        load_exchange(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.together.xyz/v1/v1/chat/completions", CHAT),
        ("https://api.fireworks.ai/inference/v1/v1/embeddings", EMBEDDINGS),
        ("https://x.openai.azure.com/openai/v1/v1/models", MODELS),
        ("__databricks__/serving-endpoints/v1/chat/completions", CHAT),
        ("https://generativelanguage.googleapis.com/v1beta/openai/v1/models", MODELS),
        ("https://us-south.ml.cloud.ibm.com/ml/v1/v1/models", MODELS),
        ("http://localhost:11434/v1/v1/completions", COMPLETIONS),
        ("http://localhost:8080/v1/models", MODELS),
        ("/v1/chat/completions", CHAT),
        ("/v1/v1/chat/completions", CHAT),
        ("/inference/v1/chat/completions", CHAT),
        ("/v1/completions?x=1", COMPLETIONS),
        ("/chat/completions", CHAT),
        ("/v1/models/accounts/fireworks/models/x", "/v1/models/accounts/fireworks/models/x"),
        ("/v1/v1/responses", "/v1/responses"),
        ("/health", "/health"),
        ("/", "/"),
    ],
)
def test_normalise_path(given: str, expected: str) -> None:
    assert normalise_path(given) == expected
