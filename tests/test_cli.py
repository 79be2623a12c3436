"""The command line: a config that start-up would refuse fails at once, in one message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from switchyard.cli import _calls_itself, main
from switchyard.config import Config, ProviderConfig, RecordingConfig


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("providers: [{id: a, type: bogus}]", "providers.0: unknown provider type 'bogus'"),
        (
            "providers: [{id: a, type: openai_compatible}]",
            "providers.0: provider 'a' (type openai_compatible) needs a base_url",
        ),
        ('store: {url: "sqlite:////proc/nope/x.db"}', "store.url: cannot create the store's"),
        ('store: {url: "mysql://x/y"}', "\n  store.url uses 'mysql';"),
        ('store: {url: "postgresql://u@db:port/x"}', "is not a database URL"),
        ('store: {url: "sqlite:///:memory:"}', "an in-memory SQLite database cannot be shared"),
        ("recording: {mode: replay, cassettes: /nonexistent}", "recording.cassettes: replay"),
        ("recording: {mode: record}", "recording.cassettes: recording.mode is 'record' but"),
        (
            "providers: [{id: v, type: vllm, base_url: 'https://v/v1', tls_verify: /no/ca.pem}]",
            "providers.0: provider 'v': tls_verify '/no/ca.pem' cannot be read as CA",
        ),
        (
            "providers: [{id: v, type: vllm, base_url: 'http://v:8000/v1 '}]",
            "base_url 'http://v:8000/v1 ' holds a space",
        ),
        # Served as JSON by /v1/models, where only text keys can be written.
        (
            "models: [{provider_id: a, provider_model_id: m, metadata: {per: {1000: 1}}}]",
            "models.0.metadata: Value error, metadata.per has the key 1000, which YAML read",
        ),
        (
            "models: [{provider_id: a, provider_model_id: m, metadata: {x: [{on: 1}]}}]",
            "metadata.x[0] has the key True, which YAML read as a boolean",
        ),
    ],
)
def test_a_config_start_up_would_refuse_names_file_and_field_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_text: str, words: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    # The command exports its options for the workers; these restore the test's own.
    for name in ("SWITCHYARD_CONFIG", "HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--port", "1"])
    assert result.exit_code == 2
    assert f"invalid configuration in {path}:" in result.output
    assert words in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("mode", ["replay", "record-if-missing"])
def test_a_cassette_to_replay_that_does_not_load_is_named_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    for name in ("SWITCHYARD_CONFIG", "HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    (cassettes / "broken.json").write_text('{"version": 1, "interactions": [')
    path = tmp_path / "c.yaml"
    path.write_text(
        f"recording: {{mode: {mode}, cassettes: {cassettes}}}\nstore: {{enabled: false}}"
    )
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--port", "1"])
    assert result.exit_code == 2
    assert "recording.cassettes: cannot replay:" in result.output
    assert "broken.json" in result.output and "Traceback" not in result.output


def _run_without_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[list[dict[str, Any]], Result]:
    """``switchyard run ARGS`` with a store-less config, uvicorn's serving replaced by a
    note of what it was asked: those notes, and the command's result."""
    for name in ("SWITCHYARD_CONFIG", "HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text("store: {enabled: false}")
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: served.append(kw))
    return served, CliRunner().invoke(main, ["run", "--config", str(path), *args])


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serving_beyond_loopback_without_keys_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, warned: bool
) -> None:
    served, result = _run_without_serving(tmp_path, monkeypatch, "--host", host)
    assert result.exit_code == 0, result.output
    assert [kw["host"] for kw in served] == [host]
    assert ("no server.api_keys" in result.output) is warned


def test_a_provider_that_would_call_this_server_itself_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.delenv("SWITCHYARD_CONFIG", raising=False)
    # Set for the clients of Switchyard, it would make the openai provider loop.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:18377/v1")
    result = CliRunner().invoke(main, ["run", "--port", "18377"])
    assert result.exit_code == 2
    assert "provider 'openai' would call this server itself" in result.output


@pytest.mark.parametrize(
    ("host", "base_url", "loops"),
    [
        ("127.0.0.1", "http://localhost:18377/v1", True),
        ("0.0.0.0", "http://127.0.0.1:18377/v1", True),
        ("::1", "http://[::1]:18377/v1", True),
        ("127.0.0.2", "http://127.0.0.1:18377/v1", False),  # another address, same port
        ("127.0.0.1", "http://127.0.0.1:18378/v1", False),
        ("127.0.0.1", "http://vllm.internal:18377/v1", False),
        ("127.0.0.1", "http://localhost:99999/v1", False),  # no such port: not this server
    ],
)
def test_which_base_urls_call_this_server(host: str, base_url: str, loops: bool) -> None:
    config = Config(providers=[ProviderConfig(id="v", type="vllm", base_url=base_url)])
    assert (_calls_itself(config, host, 18377) is not None) is loops
    replaying = config.model_copy(update={"recording": RecordingConfig(mode="replay")})
    assert _calls_itself(replaying, host, 18377) is None  # replay calls no provider


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_refused(port: str) -> None:
    result = CliRunner().invoke(main, ["run", "--port", port])
    assert result.exit_code == 2
    assert "0<=x<=65535" in result.output and "Traceback" not in result.output


def test_the_log_level_is_read_in_any_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, result = _run_without_serving(tmp_path, monkeypatch, "--log-level", "DEBUG")
    assert result.exit_code == 0, result.output
    assert [kw["log_level"] for kw in served] == ["debug"]
