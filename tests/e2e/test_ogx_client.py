"""Llama Stack's client library (ogx-client, formerly llama-stack-client) works unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ogx_client import OgxClient
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.server import ServerHandle, thread_server

EMBED = "st/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    upstream = FaultyUpstream().start()
    config = {
        "providers": [
            {"id": "st", "type": "sentence-transformers"},
            {
                "id": "up",
                "type": "openai_compatible",
                "base_url": upstream.url + "/v1",
                "api_key": "sk-secret-value",
            },
        ]
    }
    try:
        with thread_server(config) as handle:
            yield handle
    finally:
        upstream.stop()


def test_models_carry_llama_stack_metadata(server: ServerHandle) -> None:
    with OgxClient(base_url=server.url) as client:
        models = {m.identifier: m for m in client.models.list().data}  # type: ignore[union-attr]
        embed = models[EMBED]
        assert (embed.model_type, embed.provider_id, embed.provider_resource_id) == (
            "embedding",
            "st",
            "all-MiniLM-L6-v2",
        )
        assert embed.metadata == {"embedding_dimension": 384, "context_length": 256}
        assert models["up/ok"].model_type == "llm"
        one = client.models.retrieve(EMBED)
        assert (one.identifier, one.api_model_type, one.provider_resource_id) == (  # type: ignore[union-attr]
            EMBED,
            "embedding",
            "all-MiniLM-L6-v2",
        )


def test_providers_with_redacted_secrets(server: ServerHandle) -> None:
    with OgxClient(base_url=server.url) as client:
        providers = {p.provider_id: p for p in client.providers.list()}
        assert providers["st"].provider_type == "inline::sentence-transformers"
        remote = client.providers.retrieve("up")
        assert remote.api == "inference" and remote.provider_type == "remote::openai_compatible"
        assert "sk-secret-value" not in str(remote.config)
        assert remote.health["status"] == "OK"


def test_inference_through_the_client(server: ServerHandle) -> None:
    with OgxClient(base_url=server.url) as client:
        vectors = client.embeddings.create(model=EMBED, input=["one", "two"])
        assert [len(d.embedding) for d in vectors.data] == [384, 384]
        answer = client.chat.completions.create(
            model="up/ok", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "fine"
