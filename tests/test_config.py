"""Config: YAML + env substitution, defaults from the environment, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchyard.config import (
    config_from_dict,
    config_from_environment,
    default_config,
    load_config,
    substitute_env,
)
from switchyard.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${env.A}", {"A": "1"}, "1"),
        ("x-${env.A}-y", {"A": "1"}, "x-1-y"),
        ("${env.A:=dflt}", {}, "dflt"),
        ("${env.A:=dflt}", {"A": ""}, "dflt"),
        ("${env.A:=dflt}", {"A": "set"}, "set"),
        ("${env.A:+on}", {"A": "k"}, "on"),
        ("${env.A:+on}", {}, ""),
        ("plain", {}, "plain"),
    ],
)
def test_substitution(text: str, env: dict[str, str], expected: str) -> None:
    assert substitute_env(text, env) == expected


def test_a_missing_required_variable_names_it() -> None:
    with pytest.raises(ConfigError, match="NOPE is not set"):
        substitute_env("${env.NOPE}", {}, "f.yaml: providers[0].api_key")


def test_file_with_substitution_and_disabled_provider(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
server: {port: "${env.PORT:=9000}"}
providers:
  - {id: "${env.GROQ_API_KEY:+groq}", type: groq, api_key: "${env.GROQ_API_KEY}"}
  - {id: t, type: together, api_key: "${env.TKEY}"}
models:
  - {provider_id: t, provider_model_id: m/x, aliases: [short]}
  - {provider_id: "${env.GROQ_API_KEY:+groq}", provider_model_id: llama}
"""
    )
    config = load_config(path, {"TKEY": "secret"})
    assert config.server.port == 9000
    assert [p.id for p in config.providers] == ["t"]
    assert config.providers[0].api_key == "secret"
    assert [m.model_id for m in config.models] == ["t/m/x"]
    with_groq = load_config(path, {"TKEY": "secret", "GROQ_API_KEY": "g"})
    assert [p.id for p in with_groq.providers] == ["groq", "t"]
    assert [m.model_id for m in with_groq.models] == ["t/m/x", "groq/llama"]


def test_a_model_may_name_a_switched_off_provider_plainly(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
providers:
  - {id: "${env.GROQ_API_KEY:+groq}", type: groq, api_key: "${env.GROQ_API_KEY}"}
  - {id: t, type: together, api_key: k}
models:
  - {provider_id: groq, provider_model_id: llama, aliases: [fast]}
  - {provider_id: t, provider_model_id: m}
"""
    )
    assert [m.model_id for m in load_config(path, {}).models] == ["t/m"]
    with_groq = load_config(path, {"GROQ_API_KEY": "g"})
    assert [m.model_id for m in with_groq.models] == ["groq/llama", "t/m"]


def test_the_models_of_a_switched_id_stay_with_the_provider_that_is_on() -> None:
    # Pick one backend: the one switched off must not take the kept one's models along.
    raw = {
        "providers": [
            {"id": "${env.USE_VLLM:+local}", "type": "vllm", "base_url": "http://v/v1"},
            {"id": "${env.USE_OLLAMA:+local}", "type": "ollama"},
        ],
        "models": [{"provider_id": "local", "provider_model_id": "m"}],
    }
    config = config_from_dict(raw, "x", env={"USE_VLLM": "1"})
    assert [(p.id, p.type) for p in config.providers] == [("local", "vllm")]
    assert [m.model_id for m in config.models] == ["local/m"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("${env.K:-sk-proj-secret}", "${env.K"),  # the shell's default form
        ("${OPENAI_API_KEY}", "${OPENAI_API_KEY"),  # compose's
        ("${env.A:=${env.B}}", "${env.A"),  # nesting is not read
    ],
)
def test_a_form_not_read_is_refused_without_its_default(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        substitute_env(text, {"B": "b"}, "providers[0].api_key")
    assert f"'{named}' starts a" in caught.value.message
    assert "secret" not in caught.value.message  # a default may be a key
    assert substitute_env("${env.A:=pa$word}", {}) == "pa$word"


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("server: {port: high}", "server.port"),
        ("providers: [{id: a}]", "providers.0.type"),
        ("bogus: 1", "bogus"),
        ("store: {policy: sometimes}", "store.policy"),
        ("recording: {mode: replai}", "recording.mode"),
        ("providers: [{id: a, type: openai}, {id: a, type: openai}]", "appears twice"),
        ("[1, 2", "invalid YAML"),
        # A section pasted below another of its name: YAML alone keeps the last.
        ("providers: []\nserver: {}\nproviders: []", "found the key 'providers' twice"),
        ("server: {port: 1, host: h, port: 2}", "line 1, column 28"),
        ("- a list", "must be a mapping"),
        (
            "models: [{provider_id: nope, provider_model_id: m}]",
            "provider 'nope', which is not configured",
        ),
        # uvicorn knows no "warn": it would fail with a traceback after the checks.
        ("server: {log_level: warn}", "server.log_level"),
        # The model part of an id starts at the first "/".
        ("providers: [{id: a/b, type: openai}]", "providers.0.id"),
        # The shell's default form would be sent as the key itself.
        ("providers: [{id: a, type: openai, api_key: '${env.K:-x}'}]", "${env.X:=default}"),
        # A second model of one name would silently take it from the first.
        (
            "providers: [{id: a, type: openai}]\nmodels: [{provider_id: a, provider_model_id: m,"
            " id: f}, {provider_id: a, provider_model_id: n, id: f}]",
            "models[1]: 'f' is already the id of models[0]",
        ),
        (
            "providers: [{id: a, type: openai}]\nmodels: [{provider_id: a, provider_model_id: m,"
            " aliases: [q]}, {provider_id: a, provider_model_id: n, aliases: [q]}]",
            "models[1]: 'q' is already an alias of models[0]",
        ),
        (
            "providers: [{id: a, type: openai}]\n"
            "models: [{provider_id: '${env.NOPE}', provider_model_id: m}]",
            "models[0].provider_id: environment variable NOPE is not set",
        ),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, yaml_text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(path) in info.value.message
    assert words in info.value.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", {})
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("server: {host: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml is not UTF-8 .*save it as UTF-8"):
        load_config(latin, {})


def test_default_enables_providers_from_the_environment() -> None:
    env = {
        "TOGETHER_API_KEY": "t",
        "TOGETHER_BASE_URL": "http://127.0.0.1:1/v1",
        "GROQ_API_KEY": "g",
        "OLLAMA_URL": "http://127.0.0.1:11434/",
        "VLLM_URL": "http://127.0.0.1:8000/v1",
        "VLLM_API_TOKEN": "v",
    }
    providers = {p.id: p for p in default_config(env).providers}
    assert sorted(providers) == ["groq", "ollama", "sentence-transformers", "together", "vllm"]
    assert providers["together"].base_url == "http://127.0.0.1:1/v1"
    assert providers["groq"].base_url is None  # the provider's own default
    assert providers["ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert providers["vllm"].api_key == "v"


def test_the_environment_gives_a_file_provider_its_base_url(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    types = ["together", "openai", "fireworks", "groq", "ollama", "vllm", "openai_compatible"]
    providers = [{"id": t, "type": t, "api_key": "k"} for t in types]
    providers.append({"id": "own", "type": "openai", "base_url": "http://127.0.0.1:7/v1"})
    path.write_text(json.dumps({"providers": providers}))
    env = {
        "TOGETHER_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_BASE_URL": "http://127.0.0.1:2/v1",
        "FIREWORKS_BASE_URL": "http://127.0.0.1:3/v1",
        "GROQ_BASE_URL": "http://127.0.0.1:4/v1",
        "OLLAMA_URL": "http://127.0.0.1:5/v1/",  # as Llama Stack's configs give it
        "VLLM_URL": "http://127.0.0.1:6/v1",
    }
    got = {p.id: p.base_url for p in load_config(path, env).providers}
    assert got == {
        "together": "http://127.0.0.1:1/v1",
        "openai": "http://127.0.0.1:2/v1",
        "fireworks": "http://127.0.0.1:3/v1",
        "groq": "http://127.0.0.1:4/v1",
        "ollama": "http://127.0.0.1:5/v1",
        "vllm": "http://127.0.0.1:6/v1",
        "openai_compatible": None,  # no variable of its own
        "own": "http://127.0.0.1:7/v1",  # the file's own wins
    }
    assert {p.base_url for p in load_config(path, {}).providers} == {None, "http://127.0.0.1:7/v1"}
    # A config given as a dict (the pytest plugin's in-process server) gets them too.
    raw = {"providers": [{"id": "o", "type": "openai", "api_key": "k"}]}
    assert config_from_dict(raw, "test", env).providers[0].base_url == "http://127.0.0.1:2/v1"


def test_default_with_nothing_set_is_inline_embeddings_only(tmp_path: Path) -> None:
    config = default_config({})
    assert [p.type for p in config.providers] == ["sentence-transformers"]
    assert config.store.url is None and config.recording.mode == "live"


def test_switchyard_variables_override(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers: []")
    env = {
        "SWITCHYARD_CONFIG": str(path),
        "SWITCHYARD_STORE_URL": "postgresql://postgres@127.0.0.1:5432/test",
        "SWITCHYARD_RECORD_MODE": "replay",
        "SWITCHYARD_CASSETTES": str(tmp_path),
    }
    config = config_from_environment(env)
    assert config.store.url == env["SWITCHYARD_STORE_URL"]
    assert config.recording.mode == "replay"
    with pytest.raises(ConfigError, match=r"recording\.mode"):
        config_from_environment({**env, "SWITCHYARD_RECORD_MODE": "sometimes"})


def test_api_keys_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: {api_keys: [sk-file]}")
    assert config_from_environment({"SWITCHYARD_CONFIG": str(path)}).server.api_keys == ["sk-file"]
    env = {"SWITCHYARD_CONFIG": str(path), "SWITCHYARD_API_KEYS": "sk-a, sk-b,"}
    assert config_from_environment(env).server.api_keys == ["sk-a", "sk-b"]
    for bad in ("sk with a space", "sk-\u00e9", "sk,two"):
        path.write_text(f"server: {{api_keys: [{bad!r}]}}")
        with pytest.raises(ConfigError, match=r"c\.yaml(.|\n)*server\.api_keys\.0"):
            config_from_environment({"SWITCHYARD_CONFIG": str(path)})
    # "$K1,$K2" with neither set must not turn the file's keys off.
    path.write_text("server: {api_keys: [sk-file]}")
    for empty in (",", " , "):
        with pytest.raises(ConfigError, match="SWITCHYARD_API_KEYS is set but holds no key"):
            config_from_environment({**env, "SWITCHYARD_API_KEYS": empty})


def test_allowed_origins_must_be_origins() -> None:
    config = config_from_dict(
        {"server": {"allowed_origins": ["https://a.example:3000/", "*"]}}, "x"
    )
    assert config.server.allowed_origins == ["https://a.example:3000/", "*"]
    with pytest.raises(ConfigError, match=r"server.allowed_origins.*'app.example.com' is not an"):
        config_from_dict({"server": {"allowed_origins": ["app.example.com"]}}, "x")
    with pytest.raises(ConfigError, match="sandboxed page"):
        config_from_dict({"server": {"allowed_origins": ["null"]}}, "x")


def test_a_provider_id_fits_the_stores_column() -> None:
    provider = {"id": "p" * 129, "type": "openai_compatible", "base_url": "http://h/v1"}
    with pytest.raises(ConfigError, match=r"providers\.0\.id"):
        config_from_dict({"providers": [provider]}, "x")


def test_replay_needs_no_keys_a_config_for_recording_names() -> None:
    provider = {"id": "t", "type": "together", "api_key": "${env.TOGETHER_API_KEY}"}
    raw = {"providers": [provider], "recording": {"mode": "replay", "cassettes": "c"}}
    assert config_from_dict(raw, "<t>", {}).providers[0].api_key is None
    assert provider["api_key"] == "${env.TOGETHER_API_KEY}"  # the caller's dict unchanged
    # The mode from the command line (SWITCHYARD_RECORD_MODE) counts too.
    live = {"providers": [provider]}
    assert config_from_dict(live, "<t>", {"SWITCHYARD_RECORD_MODE": "replay"}).providers
    # A key that is set is kept; anything but replay still needs it.
    set_key = config_from_dict(raw, "<t>", {"TOGETHER_API_KEY": "k"})
    assert set_key.providers[0].api_key == "k"
    for mode in ("live", "record", "record-if-missing"):
        with pytest.raises(ConfigError, match="TOGETHER_API_KEY is not set"):
            config_from_dict({**raw, "recording": {"mode": mode, "cassettes": "c"}}, "<t>", {})


def test_a_section_whose_lines_are_all_commented_out_is_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n#  port: 9000\nproviders:\nmodels:\nstore:\nrecording:\n")
    config = load_config(path, {})
    assert (config.server.port, config.providers, config.models) == (8321, [], [])
    assert config.store.enabled and config.recording.mode == "live"


def test_yaml_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "providers:\n"
        "  - &base {id: a, type: openai_compatible, base_url: 'http://h/v1', timeout: 5}\n"
        "  - <<: *base\n"
        "    id: b\n"  # a key after the merge overrides the merged one: not a duplicate
        "  - {<<: [*base], id: c, timeout: 9}\n"
    )
    providers = load_config(path, {}).providers
    assert [(p.id, p.timeout) for p in providers] == [("a", 5), ("b", 5), ("c", 9)]


def test_a_key_yaml_cannot_use_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("? [a]\n: 1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, {})
