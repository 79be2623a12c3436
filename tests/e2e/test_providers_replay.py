"""Every provider's recorded traffic, replayed through a real Switchyard and the openai SDK.

The shared Llama Stack recordings are imported into cassettes at test time, and one server
in replay mode serves all the providers (their ids are the recordings' folder names),
without network (see ``tests/support/offline.py``). Each recorded request is sent as it was
recorded, and the recorded answer must come back: chat with and without streaming and
tools, completions, embeddings, model listing, recorded errors. Where Switchyard refuses a
provider's feature (DESIGN.md, "Provider facts"), the test checks the clear 400 instead.
"""

from __future__ import annotations

import base64
import os
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.support.offline import BLOCKED_MARK, OfflineServer, offline_server
from tests.support.recorded_upstream import NOT_SERVED, exchanges_for, recordings_root

from switchyard.recording.files import load_cassette
from switchyard.recording.importer import import_llama_stack

ROOT = recordings_root()  # missing recordings fail the suite loudly, never skip it

CHAT, COMPLETIONS, EMBEDDINGS, MODELS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
)
# Providers with a module of their own; the rest speak plain OpenAI-compatible HTTP.
TYPED = {"together", "openai", "fireworks", "ollama", "vllm", "gemini"}
PROVIDERS = sorted(p.name for p in ROOT.iterdir() if p.is_dir())


def _config(cassettes: Path) -> dict[str, Any]:
    providers = []
    for name in [*PROVIDERS, "groq"]:
        provider: dict[str, Any] = {"id": name, "type": name, "api_key": "sk-provider-secret"}
        if name not in TYPED and name != "groq":
            provider["type"] = "openai_compatible"
        if provider["type"] in ("openai_compatible", "vllm"):
            # Typed providers keep their real default hosts: replay must never call them.
            provider["base_url"] = f"https://{name}.example.com/v1"
        providers.append(provider)
    return {
        "providers": providers,
        "store": {"enabled": False},
        "server": {"discovery_timeout": 30},
        "recording": {"cassettes": str(cassettes)},
    }


@pytest.fixture(scope="module")
def cassettes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("cassettes")
    report = import_llama_stack(ROOT, destination)
    assert report.skipped == {}
    assert report.total == 445
    return destination


@pytest.fixture(scope="module")
def server(cassettes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineServer]:
    workdir = tmp_path_factory.mktemp("replay-server")
    env = {"SWITCHYARD_RECORD_MODE": "replay", "SWITCHYARD_CASSETTES": str(cassettes)}
    with offline_server(_config(cassettes), workdir, env=env) as running:
        yield running
    assert BLOCKED_MARK not in running.log()


@pytest.fixture(scope="module")
def client(server: OfflineServer) -> Iterator[openai.OpenAI]:
    with server.openai() as sdk:
        yield sdk


def _recorded(provider: str, endpoint: str, *, stream: bool | None = None) -> list[Any]:
    return [
        e
        for e in exchanges_for(provider)
        if e.endpoint == endpoint and e.status == 200 and (stream is None or e.is_stream == stream)
    ]


def _providers_with(endpoint: str, *, stream: bool | None = None) -> list[str]:
    return [p for p in PROVIDERS if ROOT.is_dir() and _recorded(p, endpoint, stream=stream)]


def _wire(body: dict[str, Any]) -> dict[str, Any]:
    """The body as it was sent: Llama Stack's recorder kept the SDK's ``extra_body`` apart."""
    merged = {k: v for k, v in body.items() if k != "extra_body"}
    for key, value in (body.get("extra_body") or {}).items():
        merged.setdefault(key, value)
    return merged


def _split(body: dict[str, Any], *named: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's named arguments, and the rest for ``extra_body`` (sent as they are)."""
    known = {k: body[k] for k in named if k in body}
    return known, {k: v for k, v in body.items() if k not in known}


def _without_ids(payload: dict[str, Any]) -> dict[str, Any]:
    # Switchyard answers with the client's model id and its own completion id.
    return {k: v for k, v in payload.items() if k not in ("id", "model")}


# -- chat --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", _providers_with(CHAT, stream=False))
def test_chat_returns_the_recorded_completion(client: openai.OpenAI, provider: str) -> None:
    for exchange in _recorded(provider, CHAT, stream=False):
        body = _wire(exchange.body)
        known, extra = _split(body, "messages")
        model = f"{provider}/{body['model']}"
        raw = client.chat.completions.with_raw_response.create(
            model=model, **known, extra_body={k: v for k, v in extra.items() if k != "model"}
        )
        payload = raw.http_response.json()
        assert _without_ids(payload) == _without_ids(exchange.response), exchange.source
        completion = raw.parse()
        assert completion.model == model
        recorded = exchange.response["choices"][0]["message"]
        assert completion.choices[0].message.content == recorded["content"]
        calls = completion.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls] == [  # type: ignore[union-attr]
            c["function"]["name"] for c in recorded.get("tool_calls") or []
        ]


def _stream_text(events: list[dict[str, Any]], field: str) -> str:
    parts = []
    for event in events:
        for choice in event.get("choices") or []:
            source = choice.get("delta") if field == "content" else choice
            value = (source or {}).get(field)
            parts.append(value if isinstance(value, str) else "")
    return "".join(parts)


@pytest.mark.parametrize("provider", _providers_with(CHAT, stream=True))
def test_chat_stream_arrives_chunk_by_chunk(client: openai.OpenAI, provider: str) -> None:
    for exchange in _recorded(provider, CHAT, stream=True):
        body = _wire(exchange.body)
        known, extra = _split(body, "messages")
        extra.pop("model")
        extra.pop("stream")
        stream = client.chat.completions.create(
            model=f"{provider}/{body['model']}", stream=True, **known, extra_body=extra
        )
        chunks = [chunk.to_dict() for chunk in stream]
        assert len(chunks) == len(exchange.events), exchange.source
        if len(exchange.events) > 1:
            assert len(chunks) >= 2
        assert _stream_text(chunks, "content") == _stream_text(exchange.events, "content")
        # Each choice's role once, as OpenAI gives it, though the provider repeated it:
        # the SDK's stream helpers join every piece of it.
        roles: dict[int, str] = {}
        for chunk in chunks:
            for choice in chunk.get("choices") or []:
                role = (choice.get("delta") or {}).get("role")
                roles[choice["index"]] = roles.get(choice["index"], "") + (role or "")
        assert set(roles.values()) <= {"", "assistant"}, exchange.source
        names = [
            call["function"].get("name")
            for chunk in chunks
            for choice in chunk.get("choices") or []
            for call in choice.get("delta", {}).get("tool_calls") or []
        ]
        recorded_names = [
            call["function"].get("name")
            for event in exchange.events
            for choice in event.get("choices") or []
            for call in (choice.get("delta") or {}).get("tool_calls") or []
        ]
        assert names == recorded_names


# -- completions ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", _providers_with(COMPLETIONS))
def test_completions_return_the_recorded_text(client: openai.OpenAI, provider: str) -> None:
    for exchange in _recorded(provider, COMPLETIONS):
        body = _wire(exchange.body)
        extra = {k: v for k, v in body.items() if k not in ("model", "prompt", "stream")}
        model = f"{provider}/{body['model']}"
        if exchange.is_stream:
            stream = client.completions.create(
                model=model, prompt=body["prompt"], stream=True, extra_body=extra
            )
            chunks = [chunk.to_dict() for chunk in stream]
            assert len(chunks) == len(exchange.events) >= 2, exchange.source
            assert _stream_text(chunks, "text") == _stream_text(exchange.events, "text")
        else:
            completion = client.completions.create(
                model=model, prompt=body["prompt"], extra_body=extra
            )
            assert completion.choices[0].text == exchange.response["choices"][0]["text"]


# -- embeddings ----------------------------------------------------------------------------


def _embed(client: openai.OpenAI, provider: str, body: dict[str, Any]) -> httpx.Response:
    sent = {**body, "model": f"{provider}/{body['model']}"}
    if "encoding_format" in body:
        known, extra = _split(sent, "model", "input", "encoding_format")
        return client.embeddings.with_raw_response.create(**known, extra_body=extra).http_response
    # Without an encoding_format the SDK's embeddings.create asks for base64, which is not
    # what was recorded; its generic post sends the body as it is.
    return client.post("/embeddings", body=sent, cast_to=httpx.Response)


@pytest.mark.parametrize("provider", _providers_with(EMBEDDINGS))
def test_embeddings_return_the_recorded_vectors(client: openai.OpenAI, provider: str) -> None:
    for exchange in _recorded(provider, EMBEDDINGS):
        body = exchange.body
        if body["input"] in ("", []):
            # Fireworks answered an empty input with no vectors; Switchyard, like OpenAI,
            # refuses it up front.
            with pytest.raises(openai.BadRequestError, match="'input'"):
                _embed(client, provider, body)
            continue
        answer = exchange.response
        if (
            body.get("dimensions")
            and len(_floats(answer["data"][0])["embedding"]) != body["dimensions"]
        ):
            # The provider ignored dimensions (Ollama, when recorded): a clear 400 instead
            # of vectors of another size than asked.
            with pytest.raises(openai.BadRequestError, match="'dimensions'"):
                _embed(client, provider, body)
            continue
        wants_base64 = body.get("encoding_format") == "base64"
        payload = _embed(client, provider, body).json()
        if wants_base64:
            # Switchyard answers base64 when asked, also where the provider sent floats
            # (Ollama; and the recorder kept the SDK's decoded floats): compare the values.
            payload["data"] = [_floats(item) for item in payload["data"]]
            answer = {**answer, "data": [_floats(item) for item in answer["data"]]}
        if answer.get("usage") is None:
            # Together answered "usage": null; OpenAI's schema, and its clients, want one.
            answer = {**answer, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        assert _without_ids(payload) == _without_ids(answer), exchange.source


def _floats(item: dict[str, Any]) -> dict[str, Any]:
    """An embedding as float32 values, whether it came as numbers or base64."""
    vector = item["embedding"]
    packed = array("f", base64.b64decode(vector) if isinstance(vector, str) else vector)
    return {**item, "embedding": packed.tolist()}


# -- models --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(client: openai.OpenAI) -> dict[str, dict[str, Any]]:
    return {model.id: model.to_dict() for model in client.models.list()}


@pytest.mark.parametrize("provider", _providers_with(MODELS))
def test_model_listing_is_replayed(
    listed: dict[str, dict[str, Any]], cassettes: Path, provider: str
) -> None:
    cassette = load_cassette(cassettes / f"{provider}.json")
    first = next(i for i in cassette.interactions if i.request.path == MODELS)
    # Gemini's resource names (models/gemini-2.5-flash) are listed by their bare name.
    recorded = {entry["id"].removeprefix("models/") for entry in first.response.body["data"]}
    mine = {k: v for k, v in listed.items() if v["custom_metadata"]["provider_id"] == provider}
    shown = {m["custom_metadata"]["provider_resource_id"] for m in mine.values()}
    assert shown <= recorded
    # Only models no endpoint of Switchyard serves are left out.
    assert all(NOT_SERVED.search(m) for m in recorded - shown), recorded - shown
    for model_id, model in mine.items():
        assert model_id.startswith(f"{provider}/")
        assert model["custom_metadata"]["model_type"] in ("llm", "embedding")


@pytest.mark.parametrize(
    ("model", "model_type", "metadata"),
    [
        ("ollama/all-minilm:l6-v2", "embedding", {"embedding_dimension": 384}),
        ("ollama/nomic-embed-text:latest", "embedding", {"embedding_dimension": 768}),
        ("ollama/llama3.2:3b-instruct-fp16", "llm", {}),
        ("vllm/Qwen/Qwen3-0.6B", "llm", {"context_length": 8192}),
        (
            "fireworks/accounts/fireworks/models/qwen3-embedding-8b",
            "embedding",
            {"embedding_dimension": 4096, "context_length": 40960},
        ),
        # Listed as Google's resource name, models/gemini-2.5-flash.
        ("gemini/gemini-2.5-flash", "llm", {}),
        ("fireworks/accounts/fireworks/models/llama-v3p1-8b-instruct", "llm", {}),
        ("openai/text-embedding-3-small", "embedding", {"embedding_dimension": 1536}),
        ("openai/gpt-4o", "llm", {}),
        ("cerebras/llama-3.3-70b", "llm", {}),
    ],
)
def test_listed_models_have_their_types(
    listed: dict[str, dict[str, Any]], model: str, model_type: str, metadata: dict[str, Any]
) -> None:
    entry = listed[model]
    assert entry["custom_metadata"]["model_type"] == model_type
    assert metadata.items() <= entry["custom_metadata"].items()


def test_gemini_models_are_allowed_by_either_name(cassettes: Path, tmp_path: Path) -> None:
    """Llama Stack's configs give allowed_models as Google lists them."""
    gemini = {"id": "gemini", "type": "gemini", "api_key": "k"}
    config = {**_config(cassettes), "providers": [gemini]}
    env = {"SWITCHYARD_RECORD_MODE": "replay", "SWITCHYARD_CASSETTES": str(cassettes)}
    for n, allowed in enumerate(("models/gemini-2.5-flash", "gemini-2.5-flash")):
        gemini["allowed_models"] = [allowed]
        workdir = tmp_path / str(n)  # a server's socket file of its own
        with offline_server(config, workdir, env=env) as running, running.openai() as sdk:
            assert [m.id for m in sdk.models.list()] == ["gemini/gemini-2.5-flash"]


def test_models_named_without_their_tag_or_prefix_are_the_listed_ones(
    cassettes: Path, tmp_path: Path
) -> None:
    """Ollama takes llama3.2 for llama3.2:latest, as `ollama run` does, and lists the tag;
    Gemini lists models/gemini-2.5-flash by its bare name. Either spelling in a config
    is the listed model: allowed, and declared once (not beside its listed twin)."""
    ollama = {
        "id": "ollama",
        "type": "ollama",
        "allowed_models": ["nomic-embed-text", "llama3.2:3b-instruct-fp16"],
    }
    config = {
        **_config(cassettes),
        "providers": [ollama, {"id": "gemini", "type": "gemini", "api_key": "k"}],
        "models": [
            {"provider_id": "ollama", "provider_model_id": "nomic-embed-text"},
            {"provider_id": "gemini", "provider_model_id": "models/gemini-2.5-flash"},
        ],
    }
    env = {"SWITCHYARD_RECORD_MODE": "replay", "SWITCHYARD_CASSETTES": str(cassettes)}
    with offline_server(config, tmp_path, env=env) as running, running.openai() as sdk:
        models = {m.id: m.to_dict() for m in sdk.models.list()}
        tagged = sdk.models.retrieve("ollama/nomic-embed-text:latest").to_dict()
    assert "ollama/all-minilm:l6-v2" not in models  # not allowed
    assert {"ollama/nomic-embed-text", "ollama/llama3.2:3b-instruct-fp16"} <= models.keys()
    assert "ollama/nomic-embed-text:latest" not in models
    # Answered under the name asked, as an alias is, with the declared model's fields.
    assert tagged["custom_metadata"] == models["ollama/nomic-embed-text"]["custom_metadata"]
    declared = models["ollama/nomic-embed-text"]["custom_metadata"]
    assert (declared["model_type"], declared["embedding_dimension"]) == ("embedding", 768)
    gemini = [m for m in models if m.startswith("gemini/") and "2.5-flash" in m]
    assert "gemini/models/gemini-2.5-flash" in gemini
    assert "gemini/gemini-2.5-flash" not in gemini


def test_a_model_declared_under_both_spellings_is_both(cassettes: Path, tmp_path: Path) -> None:
    """Declared by its listed name and by its short one: each declaration stays its own
    (the short one does not take over the listed name), in either order."""
    tagged = {
        "provider_id": "ollama",
        "provider_model_id": "nomic-embed-text:latest",
        "aliases": ["nomic"],
        "metadata": {"declared": "tagged"},
    }
    short = {"provider_id": "ollama", "provider_model_id": "nomic-embed-text"}
    env = {"SWITCHYARD_RECORD_MODE": "replay", "SWITCHYARD_CASSETTES": str(cassettes)}
    for n, models in enumerate(([tagged, short], [short, tagged])):
        config = {**_config(cassettes), "providers": [{"id": "ollama", "type": "ollama"}]}
        config["models"] = models
        with offline_server(config, tmp_path / str(n), env=env) as running, running.openai() as sdk:
            listed = {m.id for m in sdk.models.list()}
            by_alias = sdk.models.retrieve("nomic").to_dict()["custom_metadata"]
            by_tag = sdk.models.retrieve("ollama/nomic-embed-text:latest").to_dict()
        assert {"ollama/nomic-embed-text", "ollama/nomic-embed-text:latest"} <= listed
        assert by_alias["declared"] == by_tag["custom_metadata"]["declared"] == "tagged"


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        ("openai/gpt-4o-audio-preview", True),  # audio in and out of chat completions
        ("openai/gpt-4o-search-preview", True),
        ("openai/babbage-002", True),  # completions
        ("openai/whisper-1", False),
        ("openai/gpt-4o-mini-tts", False),
        ("openai/gpt-4o-transcribe", False),
        ("openai/gpt-realtime", False),
        ("openai/dall-e-3", False),
        ("openai/gpt-image-1", False),
        ("openai/omni-moderation-latest", False),
        ("openai/sora-2", False),
        ("gemini/gemini-2.5-flash-image", True),
        ("gemini/imagen-4.0-generate-001", False),
        ("gemini/veo-3.0-generate-001", False),
        ("gemini/gemini-2.5-flash-preview-tts", False),
        ("gemini/gemini-2.0-flash-live-001", False),
        ("fireworks/accounts/fireworks/models/flux-1-dev-fp8", False),  # supports_chat: false
        ("fireworks/accounts/fireworks/models/flux-kontext-pro", False),  # kind FLUMINA_...
        ("fireworks/accounts/fireworks/models/qwen3-embedding-8b", True),
    ],
)
def test_models_no_endpoint_serves_are_not_listed(
    listed: dict[str, dict[str, Any]], model: str, shown: bool
) -> None:
    assert (model in listed) is shown


def test_a_provider_without_recorded_models_lists_none(listed: dict[str, Any]) -> None:
    # Together's list was never recorded: no other provider's list stands in for it.
    assert not [m for m in listed if m.startswith("together/")]


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
def test_recorded_errors_replay_as_errors(client: openai.OpenAI, provider: str) -> None:
    (exchange,) = [e for e in exchanges_for(provider) if e.status >= 400]
    body = _wire(exchange.body)
    known, extra = _split(body, "messages")
    extra.pop("model")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=f"{provider}/{body['model']}", **known, extra_body=extra
        )
    assert exchange.response["error"]["message"] in caught.value.message


def test_an_unrecorded_prompt_names_the_closest_recording(
    client: openai.OpenAI, cassettes: Path
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="together/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free",
            messages=[{"role": "user", "content": "Which planet do cats live on?"}],
            stream=False,
        )
    message = caught.value.message
    assert caught.value.code == "replay_miss"
    assert f"cassettes in {cassettes}" in message  # there is no default.json to name
    assert "default.json" not in message
    assert f"{cassettes / 'together.json'} interactions[" in message
    assert "messages[0].content" in message
    assert '"Which planet do humans live on?"' in message


# -- refusals: Switchyard's clear 400 where a provider does not support a feature -------------

TOGETHER_CHAT = "together/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free"
REFUSALS = [
    ("together n>1 streaming", "chat", TOGETHER_CHAT, {"n": 2, "stream": True}, "n=2 while"),
    ("ollama n>1", "chat", "ollama/llama3.2:3b-instruct-fp16", {"n": 2}, "n=2 (at most 1)"),
    ("groq n>1", "chat", "groq/llama-3.3-70b-versatile", {"n": 3}, "n=3 (at most 1)"),
    ("groq completions", "completions", "groq/llama-3.3-70b-versatile", {}, "/v1/completions"),
    ("gemini completions", "completions", "gemini/gemini-2.5-flash", {}, "/v1/completions"),
    ("gemini n>1", "chat", "gemini/gemini-2.5-flash", {"n": 2}, "n=2 (at most 1)"),
    (
        "together embedding dimensions",
        "embeddings",
        "together/togethercomputer/m2-bert-80M-32k-retrieval",
        {"dimensions": 16},
        "'dimensions'",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "model", "fields", "says"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refused_features_give_a_clear_error(
    client: openai.OpenAI, endpoint: str, model: str, fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        if endpoint == "chat":
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello"}], **fields
            )
        elif endpoint == "completions":
            client.completions.create(model=model, prompt="Hello", **fields)
        else:
            client.embeddings.create(model=model, input="Hello", **fields)
    assert caught.value.code == "unsupported_parameter"
    assert says in caught.value.message
    assert model.partition("/")[0] in caught.value.message


def test_the_server_ran_without_network(server: OfflineServer) -> None:
    if server.isolation == "netns":
        own = os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{server.proc.pid}/ns/net") != own
    else:
        assert server.isolation == "guard"
    assert BLOCKED_MARK not in server.log()


def test_the_isolation_is_real(tmp_path: Path) -> None:
    """The same server in live mode cannot reach a provider: the network really is gone."""
    config = {
        "providers": [
            {"id": "far", "type": "openai_compatible", "base_url": "http://192.0.2.1/v1"}
        ],
        "store": {"enabled": False},
        "server": {"discovery_timeout": 5},
    }
    with (
        offline_server(config, tmp_path) as live,
        live.openai() as sdk,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        sdk.chat.completions.create(model="far/m", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 503
    assert "cannot be reached" in caught.value.message
