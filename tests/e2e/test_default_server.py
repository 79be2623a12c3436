"""The README's first command: `switchyard run` with no config, no keys, no network."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def test_another_model_name_under_its_prefix_is_not_found(server: ServerHandle) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
    with client, pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="sentence-transformers/all-mpnet-base-v2", input="x")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert "sentence-transformers/all-MiniLM-L6-v2" in error["message"]  # what to ask instead
    # Its Hugging Face name, as a config may declare it, is the same model.
    hf_name = "sentence-transformers/sentence-transformers/all-MiniLM-L6-v2"
    answer = httpx.post(
        server.base_url + "/embeddings", json={"model": hf_name, "input": "x"}, timeout=60
    )
    assert answer.status_code == 200 and len(answer.json()["data"][0]["embedding"]) == 384


def test_usage_counts_the_tokens_embedded_and_long_texts_are_cut(server: ServerHandle) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="none") as client:
        hello = client.embeddings.create(model=MODEL, input="hello", encoding_format="float")
        assert hello.usage.prompt_tokens == 1  # no [CLS] and [SEP]
        # 2 MB of text: embedded from its first 254 tokens, as a text of 300 words is.
        huge, short = client.embeddings.create(
            model=MODEL, input=["word " * 400_000, "word " * 300], encoding_format="float"
        ).data
        assert huge.embedding == pytest.approx(short.embedding, abs=1e-6)
        again = client.embeddings.create(model=MODEL, input="word " * 400_000)
        assert again.usage.prompt_tokens == 254


LONG = "word " * 300  # cut to 254 tokens: the costliest text there is


def _embed(server: ServerHandle, texts: list[str], timeout: float = 120) -> float:
    """Embeds ``texts``; returns when it finished (time.monotonic())."""
    httpx.post(
        server.base_url + "/embeddings", json={"model": MODEL, "input": texts}, timeout=timeout
    ).raise_for_status()
    return time.monotonic()


def test_a_small_request_is_not_held_behind_a_large_one(server: ServerHandle) -> None:
    _embed(server, ["warm"])
    with ThreadPoolExecutor(2) as pool:
        large = pool.submit(_embed, server, [LONG] * 48)  # three batches
        time.sleep(0.5)
        small = pool.submit(_embed, server, ["hello"])
        assert small.result() < large.result()  # it waited for a batch, not for all of them


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_work_of_a_client_that_left_stops(server: ServerHandle) -> None:
    assert server.proc is not None
    with pytest.raises(httpx.TimeoutException):
        _embed(server, [LONG] * 320, timeout=1.0)  # twenty batches: half a minute or more
    # The batch running when it left ends; then the server is idle, no further batch run.
    deadline = time.monotonic() + 12
    while True:
        before = _cpu_seconds(server.proc.pid)
        time.sleep(1)
        if _cpu_seconds(server.proc.pid) - before < 0.3:
            break
        assert time.monotonic() < deadline, "still embedding for a client that left"


def test_a_client_leaving_during_the_first_load_does_not_undo_it(tmp_path: Path) -> None:
    # Loading the model takes seconds: an SDK's short timeout leaves during it. The
    # load goes on and is kept, or no client with a timeout shorter than it ever
    # gets an answer (each retry would start the load again, and leave again).
    with process_server(None, tmp_path, env={var: "" for var in PROVIDER_VARS}) as fresh:
        with pytest.raises(httpx.TimeoutException):
            _embed(fresh, ["hello"], timeout=0.3)
        deadline = time.monotonic() + 60
        loaded = False
        while not loaded and time.monotonic() < deadline:
            time.sleep(0.2)
            info = httpx.get(fresh.base_url + "/providers/sentence-transformers").json()
            loaded = info["config"]["loaded"]
        assert loaded  # with no request since the one that left
