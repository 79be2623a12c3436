"""A provider behind TLS with a private CA, as the openai SDK sees it through Switchyard:
refused with a message that names ``tls_verify`` until its CA's file is given."""

from __future__ import annotations

import ssl
from pathlib import Path

import openai
import pytest
import trustme
from tests.support.fake_openai import MODEL, fake_openai
from tests.support.server import process_server

HELLO = [{"role": "user", "content": "hello"}]


def test_a_provider_with_a_private_ca_is_reached_once_its_ca_is_given(tmp_path: Path) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "private-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    with fake_openai(context) as upstream:
        provider = upstream.provider_config("private")
        assert provider["base_url"].startswith("https://127.0.0.1:")
        model = {"provider_id": "private", "provider_model_id": MODEL}
        config = {"providers": [provider], "models": [model], "store": {"enabled": False}}
        with (
            process_server(config, tmp_path) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client,
            pytest.raises(openai.APIStatusError) as refused,
        ):
            client.chat.completions.create(model=f"private/{MODEL}", messages=HELLO)
        assert refused.value.status_code == 503
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert "its TLS certificate was refused" in refused.value.message
        assert (
            "if a private CA signed it, set the provider's tls_verify to that CA's certificate"
            in refused.value.message
        )
        assert upstream.calls == 0

        provider["tls_verify"] = str(ca_file)
        with (
            process_server(config, tmp_path) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client,
        ):
            listed = {m.id for m in client.models.list().data}
            answer = client.chat.completions.create(model=f"private/{MODEL}", messages=HELLO)
            pieces = client.chat.completions.create(
                model=f"private/{MODEL}", messages=HELLO, stream=True
            )
            streamed = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
        assert f"private/{MODEL}" in listed
        assert answer.choices[0].message.content
        assert streamed == answer.choices[0].message.content
        assert upstream.calls == 2
