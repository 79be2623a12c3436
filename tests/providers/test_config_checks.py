"""A provider whose config no request could succeed with fails at start, saying why."""

from __future__ import annotations

import pytest

from switchyard.config import ProviderConfig
from switchyard.errors import ConfigError
from switchyard.providers import create_provider


@pytest.mark.parametrize(
    "base_url",
    [
        "localhost:11434/v1",
        "ftp://host/v1",
        "http:///v1",
        "http://host:port/v1",
        "http://[::1/v1",
        "http://[vllm]:8000/v1",
    ],
)
def test_a_base_url_that_is_not_an_http_url_is_refused(base_url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http\\(s\\) URL") as caught:
        create_provider(ProviderConfig(id="local", type="vllm", base_url=base_url))
    assert "provider 'local'" in caught.value.message


@pytest.mark.parametrize(
    "base_url",
    [
        "https://h.example/openai?api-version=2024-10-21",
        "https://h.example/openai/v1?api-key=s3cret",
        "http://h:8000/v1#x",
    ],
)
def test_a_base_url_with_a_query_or_fragment_is_refused(base_url: str) -> None:
    # The API's paths are appended to base_url: they would land inside the query.
    with pytest.raises(ConfigError, match="has a query or a fragment") as caught:
        create_provider(ProviderConfig(id="p", type="openai_compatible", base_url=base_url))
    assert "s3cret" not in caught.value.message


@pytest.mark.parametrize(
    "base_url", ["ftp://u:s3cret@host/v1", "http://u:s3/cret@h:x/v1", "http://u:s3?cret@h:x/v1"]
)
def test_the_base_url_is_shown_without_its_password(base_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_provider(ProviderConfig(id="p", type="vllm", base_url=base_url))
    assert "cret" not in caught.value.message


@pytest.mark.parametrize("api_key", ["sk-abc\r", "sk-abc\n", "sk-\x00abc"])
def test_an_api_key_with_a_control_character_is_refused(api_key: str) -> None:
    with pytest.raises(ConfigError, match="api_key holds a line break"):
        create_provider(ProviderConfig(id="openai", type="openai", api_key=api_key))


@pytest.mark.parametrize(
    ("type_name", "options", "named"),
    [
        ("vllm", {"headers": {"x": "y"}}, "headers (it reads: none)"),
        ("sentence-transformers", {"prelaod": True}, "prelaod (it reads: preload)"),
    ],
)
def test_options_a_provider_does_not_read_are_refused(
    type_name: str, options: dict[str, object], named: str
) -> None:
    config = ProviderConfig(id="p", type=type_name, base_url="http://h/v1", options=options)
    with pytest.raises(ConfigError, match="does not read the options") as caught:
        create_provider(config)
    assert named in caught.value.message
    preload = ProviderConfig(id="p", type="sentence-transformers", options={"preload": True})
    assert create_provider(preload).config.options == {"preload": True}


def test_a_well_formed_provider_still_starts() -> None:
    provider = create_provider(
        ProviderConfig(id="v", type="vllm", base_url="http://u:p@127.0.0.1:8000/v1", api_key="k")
    )
    assert provider.id == "v"


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://u:s3%2Fcret@vllm:8000/v1", "http://***@vllm:8000/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_providers_are_described_without_their_secrets(base_url: str, shown: str) -> None:
    provider = create_provider(ProviderConfig(id="v", type="vllm", base_url=base_url))
    assert provider.describe()["base_url"] == shown


@pytest.mark.parametrize(
    ("type_name", "said"),
    [
        ("switchyard.config:ProviderConfig", r"is not a provider class: ProviderConfig\(config"),
        ("switchyard.providers:create_provider", "is not a class"),
    ],
)
def test_a_module_class_type_that_is_not_a_provider_is_a_config_error(
    type_name: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        create_provider(ProviderConfig(id="p", type=type_name))
