"""The README's first command: `switchyard run` with no config, no keys, no network."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import httpx
import openai
import pytest
from tests.support.server import ServerHandle, process_server

PROVIDER_VARS = (
    "TOGETHER_API_KEY",
    "OPENAI_API_KEY",
    "FIREWORKS_API_KEY",
    "GROQ_API_KEY",
    "OLLAMA_URL",
    "GEMINI_API_KEY",
    "VLLM_URL",
)
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    tmp = tmp_path_factory.mktemp("default")
    env = {var: "" for var in PROVIDER_VARS}
    with process_server(None, tmp, env=env) as handle:
        yield handle


def test_it_embeds_offline_with_the_bundled_model(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="none") as client:
        answer = client.embeddings.create(
            model=MODEL, input=["the cat sat", "quarterly revenue grew"]
        )
        first, second = (d.embedding for d in answer.data)
        assert len(first) == len(second) == 384
        assert first != second
        assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-3)  # normalised
        assert answer.model == MODEL
        assert answer.usage.prompt_tokens > 0


def test_similar_texts_are_closer_than_unrelated_ones(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="none") as client:
        texts = ["a dog runs in the park", "a puppy plays outside", "the bond market fell"]
        a, b, c = (d.embedding for d in client.embeddings.create(model=MODEL, input=texts).data)
        dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
        assert dot(a, b) > dot(a, c) + 0.2


def test_async_client_base64_and_dimensions(server: ServerHandle) -> None:
    async def run() -> tuple[list[float], list[float], list[float]]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none")
        floats = await client.embeddings.create(model=MODEL, input="hello", encoding_format="float")
        packed = await client.embeddings.create(model=MODEL, input="hello")  # SDK asks base64
        short = await client.embeddings.create(model=MODEL, input="hello", dimensions=64)
        await client.close()
        return floats.data[0].embedding, packed.data[0].embedding, short.data[0].embedding

    floats, packed, short = asyncio.run(run())
    assert packed == pytest.approx(floats, abs=1e-6)
    assert len(short) == 64
    assert math.isclose(math.fsum(x * x for x in short), 1.0, rel_tol=1e-3)


def test_models_providers_health_version_openapi(server: ServerHandle) -> None:
    models = httpx.get(server.base_url + "/models").json()["data"]
    assert [m["id"] for m in models] == [MODEL]
    meta = models[0]["custom_metadata"]
    assert meta == {
        "model_type": "embedding",
        "provider_id": "sentence-transformers",
        "provider_resource_id": "all-MiniLM-L6-v2",
        "embedding_dimension": 384,
        "context_length": 256,
    }
    assert httpx.get(server.base_url + "/models/" + MODEL).json()["id"] == MODEL
    providers = httpx.get(server.base_url + "/providers").json()["data"]
    assert [(p["provider_id"], p["provider_type"], p["api"]) for p in providers] == [
        ("sentence-transformers", "inline::sentence-transformers", "inference")
    ]
    assert httpx.get(server.base_url + "/health").json() == {"status": "OK"}
    assert httpx.get(server.base_url + "/version").json()["version"]
    assert "/v1/chat/completions" in httpx.get(server.url + "/openapi.json").json()["paths"]
