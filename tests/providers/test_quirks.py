"""Provider quirks as data and hooks, checked without the network."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from switchyard.config import ProviderConfig
from switchyard.errors import ConfigError, UnsupportedParameterError
from switchyard.providers import create_provider, provider_class
from switchyard.providers.openai_compat import OpenAICompatProvider
from switchyard.providers.vectors import encode_embeddings_base64


def make(type_name: str, **kwargs: Any) -> Any:
    return create_provider(ProviderConfig(id=type_name, type=type_name, **kwargs))


def test_together_reads_its_bare_list_with_types_and_dimension_table() -> None:
    provider = make("together")
    models = provider.parse_model_list(
        [
            {"id": "meta/chat", "type": "chat", "context_length": 8192},
            {"id": "togethercomputer/m2-bert-80M-32k-retrieval", "type": "embedding"},
            {"id": "flux", "type": "image"},
            {"id": "old/lm", "type": "language"},
        ]
    )
    by_id = {m.provider_model_id: m for m in models}
    assert set(by_id) == {"meta/chat", "togethercomputer/m2-bert-80M-32k-retrieval", "old/lm"}
    assert by_id["meta/chat"].model_type == "llm"
    assert by_id["meta/chat"].metadata == {"context_length": 8192}
    bert = by_id["togethercomputer/m2-bert-80M-32k-retrieval"]
    assert bert.model_type == "embedding"
    assert bert.metadata == {"embedding_dimension": 768, "context_length": 32768}


def test_openai_style_list_and_vllm_context_length() -> None:
    models = make("vllm", base_url="http://x/v1").parse_model_list(
        {"object": "list", "data": [{"id": "Qwen/Qwen3-0.6B", "max_model_len": 8192}]}
    )
    assert models[0].metadata == {"context_length": 8192}
    assert models[0].model_type is None  # the list does not say: either endpoint may try it
    groq = make("groq").parse_model_list(
        {"object": "list", "data": [{"id": "llama-3.3-70b-versatile", "context_window": 131072}]}
    )
    assert groq[0].metadata == {"context_length": 131072}


@pytest.mark.parametrize(
    ("type_name", "body", "param"),
    [
        ("together", {"n": 2, "stream": True}, "n"),
        ("groq", {"n": 2}, "n"),
        ("ollama", {"n": 4}, "n"),
    ],
)
def test_n_limits(type_name: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        make(type_name).prepare_chat(body)
    assert info.value.param == param and type_name in info.value.message


def test_limits_do_not_touch_what_is_allowed() -> None:
    body = {"n": 2, "stream": False}
    assert make("together").prepare_chat(body) is body
    streaming = {"n": 3, "stream": True}
    assert make("fireworks").prepare_chat(streaming) is streaming


def test_embedding_fields_dropped_or_refused() -> None:
    together = make("together")
    assert together.prepare_embeddings({"input": "x", "user": "u"}) == {"input": "x"}
    with pytest.raises(UnsupportedParameterError, match="dimensions"):
        together.prepare_embeddings({"input": "x", "dimensions": 8})
    # The model's own size: nothing to cut, so not sent, rather than refused.
    native = {"model": "BAAI/bge-base-en-v1.5", "input": "x", "dimensions": 768}
    assert together.prepare_embeddings(native) == {"model": "BAAI/bge-base-en-v1.5", "input": "x"}
    assert make("fireworks").prepare_embeddings({"input": "x", "user": "u"}) == {"input": "x"}
    assert make("openai").prepare_embeddings({"input": "x", "user": "u"})["user"] == "u"


def test_groq_refuses_legacy_completions() -> None:
    with pytest.raises(UnsupportedParameterError, match="completions"):
        make("groq").prepare_completions({"prompt": "x"})


def test_base64_is_little_endian_float32() -> None:
    result = {"data": [{"embedding": [1.0, -2.5]}, {"embedding": "already"}]}
    encode_embeddings_base64(result)
    raw = base64.b64decode(result["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (1.0, -2.5)
    assert result["data"][1]["embedding"] == "already"


def test_registry_names_and_import_paths() -> None:
    assert provider_class("openai_compatible") is OpenAICompatProvider
    assert (
        provider_class("switchyard.providers.openai_compat:OpenAICompatProvider")
        is OpenAICompatProvider
    )
    with pytest.raises(ConfigError, match="unknown provider type"):
        provider_class("nonsense")
    with pytest.raises(ConfigError, match="needs a base_url"):
        make("openai_compatible")


def test_ollama_takes_images_only_as_data_urls() -> None:
    ollama = make("ollama")
    inline = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    text = {"type": "text", "text": "what is this"}
    ok = {"messages": [{"role": "user", "content": [text, inline]}]}
    assert ollama.prepare_chat(ok) is ok
    with pytest.raises(UnsupportedParameterError) as info:
        ollama.prepare_chat({"messages": [{"role": "user", "content": [text, remote]}]})
    assert info.value.param == "messages[0].content[1].image_url.url"
    assert "data:image" in info.value.message
    # A provider's own part shape (a string image_url) is Ollama's to judge, not a 500.
    other = {"type": "input_image", "image_url": "https://example.com/cat.png"}
    passed = {"messages": [{"role": "user", "content": [text, other]}]}
    assert ollama.prepare_chat(passed) is passed


def test_ollama_gets_max_completion_tokens_as_the_max_tokens_it_reads() -> None:
    ollama = make("ollama")
    messages = [{"role": "user", "content": "hi"}]
    sent = ollama.prepare_chat({"messages": messages, "max_completion_tokens": 10})
    assert sent == {"messages": messages, "max_tokens": 10}
    both = {"messages": messages, "max_tokens": 5, "max_completion_tokens": 10}
    assert ollama.prepare_chat(both) is both  # Ollama reads max_tokens; nothing to move
    assert make("openai").prepare_chat({"max_completion_tokens": 10}) == {
        "max_completion_tokens": 10
    }


@pytest.mark.parametrize(
    ("model_id", "listed"),
    [
        ("ft:gpt-4o-mini-2024-07-18:acme:realtime-support:AbC123", True),
        ("ft:gpt-4o-mini-tts:acme::AbC123", False),
        ("gpt-4o-realtime-preview", False),
        ("gpt-4o-mini", True),
    ],
)
def test_an_openai_fine_tune_is_judged_by_its_base_model(model_id: str, listed: bool) -> None:
    assert _listed_by_openai(model_id) == listed


@pytest.mark.parametrize(
    ("model_id", "listed"),
    [
        # Served only by the Responses API: /v1/chat/completions answers 404.
        ("o1-pro", False),
        ("o3-pro-2025-06-10", False),
        ("gpt-5-pro", False),
        ("gpt-5.2-pro-2025-12-11", False),
        ("codex-mini-latest", False),
        ("gpt-5.1-codex-max", False),
        ("computer-use-preview-2025-03-11", False),
        # Chat models whose ids look alike.
        ("gpt-4o-search-preview", True),
        ("gpt-5-search-api", True),
        ("o3", True),
        ("gpt-5.1", True),
        ("gpt-4.5-preview", True),
    ],
)
def test_openai_models_only_its_responses_api_serves_are_not_listed(
    model_id: str, listed: bool
) -> None:
    assert _listed_by_openai(model_id) == listed


def _listed_by_openai(model_id: str) -> bool:
    provider = create_provider(ProviderConfig(id="openai", type="openai", api_key="k"))
    infos = provider.parse_model_list({"data": [{"id": model_id, "object": "model"}]})
    listed = [i.provider_model_id for i in infos]
    assert listed in ([], [model_id])
    return listed == [model_id]
