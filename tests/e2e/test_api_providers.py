"""Recorded provider traffic through a real Switchyard, with the openai SDK as client.

For each provider a RecordedUpstream replays what the provider really sent; Switchyard
is configured the way a user would (the provider's key and base-URL variables) and
every recorded chat, completion and embedding request must come back with the
recorded content; the model list must hold the recorded models with their types.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types import CreateEmbeddingResponse
from tests.support.recorded_upstream import NOT_SERVED, RecordedUpstream, exchanges_for
from tests.support.server import ServerHandle, thread_server

from switchyard.config import default_config
from switchyard.recording.llama_stack import RecordedExchange

# Together's real /models answer is a bare JSON list with a `type` per model; none was
# recorded, so this one is written in that wire format with the recorded models.
TOGETHER_MODELS = [
    {
        "id": "meta-llama/Llama-3.3-70B-Instruct-Turbo-Free",
        "object": "model",
        "created": 1733443200,
        "type": "chat",
        "display_name": "Meta Llama 3.3 70B Instruct Turbo Free",
        "organization": "Meta",
        "context_length": 131072,
    },
    {
        "id": "togethercomputer/m2-bert-80M-32k-retrieval",
        "object": "model",
        "created": 1699660800,
        "type": "embedding",
        "display_name": "M2-BERT-Retrieval-32k",
        "organization": "Together",
        "context_length": 32768,
    },
    {
        "id": "black-forest-labs/FLUX.1-schnell",
        "object": "model",
        "created": 1722470400,
        "type": "image",
        "organization": "Black Forest Labs",
    },
]

# The embedding models in the recorded lists (from the providers' documentation).
EMBEDDING_MODELS = {
    "text-embedding-3-large",
    "text-embedding-3-small",
    "text-embedding-3-small-okan-test",
    "text-embedding-ada-002",
    "accounts/fireworks/models/qwen3-embedding-8b",
    "all-minilm:l6-v2",
    "all-minilm:latest",
    "embeddinggemma:latest",
    "nomic-embed-text:137m-v1.5-fp16",
    "nomic-embed-text:latest",
    "togethercomputer/m2-bert-80M-32k-retrieval",
}

# How each provider is switched on from the environment, as the README tells users.
ENV = {
    "together": lambda url: {"TOGETHER_API_KEY": "k-together", "TOGETHER_BASE_URL": url + "/v1"},
    "openai": lambda url: {"OPENAI_API_KEY": "k-openai", "OPENAI_BASE_URL": url + "/v1"},
    "fireworks": lambda url: {
        "FIREWORKS_API_KEY": "k-fireworks",
        "FIREWORKS_BASE_URL": url + "/inference/v1",
    },
    "ollama": lambda url: {"OLLAMA_URL": url},
    "vllm": lambda url: {"VLLM_URL": url + "/v1", "VLLM_API_TOKEN": "k-vllm"},
}
PROVIDERS = list(ENV)


@pytest.fixture(scope="module", params=PROVIDERS)
def gateway(request: pytest.FixtureRequest) -> Iterator[tuple[str, ServerHandle, RecordedUpstream]]:
    provider = request.param
    override = TOGETHER_MODELS if provider == "together" else None
    upstream = RecordedUpstream(exchanges_for(provider), models_override=override)
    upstream.start_in_thread()
    env = {"HOME": "/nonexistent", **ENV[provider](upstream.url)}
    config = default_config(env)
    config.providers = [p for p in config.providers if p.id == provider]
    for p in config.providers:
        p.max_retries = 0
    try:
        with thread_server(config) as server:
            yield provider, server, upstream
    finally:
        upstream.stop_thread()


@pytest.fixture
def client(gateway: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway[1].base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def _recorded(provider: str, endpoint: str) -> list[RecordedExchange]:
    return [e for e in exchanges_for(provider) if e.endpoint == endpoint]


def _split(method: Any, body: dict[str, Any], model: str) -> dict[str, Any]:
    """SDK keyword arguments for a recorded body; unknown fields go in extra_body."""
    known = set(inspect.signature(method).parameters)
    kwargs: dict[str, Any] = {"model": model}
    extra: dict[str, Any] = dict(body.get("extra_body") or {})
    for key, value in body.items():
        if key in ("model", "extra_body"):
            continue
        if key in known:
            kwargs[key] = value
        else:
            extra[key] = value
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _stream_text(chunks: list[Any], chat: bool) -> str:
    parts = []
    for chunk in chunks:
        for choice in chunk["choices"] if isinstance(chunk, dict) else chunk.choices:
            if isinstance(choice, dict):
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            else:
                text = choice.delta.content if chat else choice.text
            parts.append(text or "")
    return "".join(parts)


def test_chat_completions_return_recorded_content(gateway: Any, client: openai.OpenAI) -> None:
    provider = gateway[0]
    done = 0
    for exchange in _recorded(provider, "/v1/chat/completions"):
        body = exchange.body or {}
        kwargs = _split(client.chat.completions.create, body, f"{provider}/{body['model']}")
        if exchange.status != 200:
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(**kwargs)
            assert exchange.response["error"]["message"] in info.value.message
            continue
        if exchange.events is not None:
            chunks = list(client.chat.completions.create(**kwargs))
            assert len(chunks) == len(exchange.events) > 1
            assert _stream_text(chunks, True) == _stream_text(exchange.events, True)
            assert {c.model for c in chunks} == {kwargs["model"]}
        else:
            answer = client.chat.completions.create(**kwargs)
            recorded = exchange.response["choices"]
            assert answer.model == kwargs["model"]
            assert [c.message.content for c in answer.choices] == [
                c["message"]["content"] for c in recorded
            ]
            assert [
                [t.function.arguments for t in c.message.tool_calls or []] for c in answer.choices
            ] == [
                [t["function"]["arguments"] for t in c["message"].get("tool_calls") or []]
                for c in recorded
            ]
        done += 1
    assert done > 0


def test_completions_return_recorded_content(gateway: Any, client: openai.OpenAI) -> None:
    provider = gateway[0]
    recorded = [e for e in _recorded(provider, "/v1/completions") if "prompt" in (e.body or {})]
    for exchange in recorded:
        body = exchange.body or {}
        kwargs = _split(client.completions.create, body, f"{provider}/{body['model']}")
        if exchange.events is not None:
            chunks = list(client.completions.create(**kwargs))
            assert len(chunks) > 1
            assert _stream_text(chunks, False) == _stream_text(exchange.events, False)
        else:
            answer = client.completions.create(**kwargs)
            assert [c.text for c in answer.choices] == [
                c["text"] for c in exchange.response["choices"]
            ]
            assert answer.model == kwargs["model"]


def _vector(value: Any) -> list[float]:
    if isinstance(value, str):
        import array

        return list(array.array("f", base64.b64decode(value)))
    return list(value)


def test_embeddings_return_recorded_vectors(gateway: Any, client: openai.OpenAI) -> None:
    provider = gateway[0]
    for exchange in _recorded(provider, "/v1/embeddings"):
        body = {**(exchange.body or {}), "model": f"{provider}/{exchange.body['model']}"}
        if body.get("input") == []:
            with pytest.raises(openai.BadRequestError) as info:
                client.post("/embeddings", body=body, cast_to=CreateEmbeddingResponse)
            assert info.value.body["param"] == "input"  # type: ignore[index]
            continue
        expected = [_vector(d["embedding"]) for d in exchange.response["data"]]
        if body.get("dimensions") and len(expected[0]) != body["dimensions"]:
            # The provider ignored dimensions when recorded (Ollama): refused, not relayed.
            with pytest.raises(openai.BadRequestError) as info:
                client.post("/embeddings", body=body, cast_to=CreateEmbeddingResponse)
            assert info.value.body["param"] == "dimensions"  # type: ignore[index]
            continue
        # client.post sends the recorded body as is (embeddings.create would add
        # encoding_format=base64 when the recording has none).
        answer = client.post("/embeddings", body=body, cast_to=CreateEmbeddingResponse)
        assert answer.model == body["model"]
        got = [_vector(d.embedding) for d in answer.data]
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert g == pytest.approx(e, rel=1e-6, abs=1e-7)
        if body.get("encoding_format") == "base64":
            assert all(isinstance(d.embedding, str) for d in answer.data)


def test_models_are_discovered_with_types(gateway: Any, client: openai.OpenAI) -> None:
    provider, _, upstream = gateway
    listed = {m.id: m for m in client.models.list()}
    served = upstream._models  # what the fake upstream answers at /models
    entries = served if isinstance(served, list) else served["data"]
    for entry in entries:
        model_id = f"{provider}/{entry['id']}"
        if entry.get("type") == "image":
            assert model_id not in listed  # neither chat nor embedding: not offered
            continue
        if model_id not in listed:
            # Only what no endpoint serves is left out (images, speech, ...; FLUX).
            assert NOT_SERVED.search(model_id), f"{model_id} missing from /v1/models"
            continue
        meta = listed[model_id].model_extra["custom_metadata"]  # type: ignore[index]
        assert meta["provider_id"] == provider
        assert meta["provider_resource_id"] == entry["id"]
        expected = "embedding" if entry["id"] in EMBEDDING_MODELS else "llm"
        assert meta["model_type"] == expected, model_id
    one = next(iter(listed))
    assert client.models.retrieve(one).id == one
