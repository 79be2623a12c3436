"""A server whose environment names an HTTP proxy reaches its providers through it, as
the openai SDK sees it: discovery and chat go by the proxy (and fail, naming it, when it
is gone); NO_PROXY hosts are reached directly."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from tests.support.fake_openai import fake_openai
from tests.support.http_proxy import http_proxy
from tests.support.server import process_server

HELLO = [{"role": "user", "content": "hello"}]


def test_providers_are_reached_through_the_proxy_of_the_environment(tmp_path: Path) -> None:
    with fake_openai() as upstream, http_proxy(tmp_path) as proxy:
        config = {"providers": [upstream.provider_config()], "store": {"enabled": False}}
        env = {"HTTP_PROXY": proxy.url}
        with (
            process_server(config, tmp_path, env=env) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client,
        ):
            model = client.models.list().data[0].id
            assert client.chat.completions.create(model=model, messages=HELLO).choices
            # proxy.py marks the first request of each connection it forwards: discovery's.
            assert (upstream.via[0] or "").startswith("1.1 proxy.py")
            through_proxy = len(upstream.via)
            proxy.stop()
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model=model, messages=HELLO)
        assert caught.value.status_code == 503
        assert "the proxy named by HTTP_PROXY cannot be reached" in caught.value.message
        assert upstream.calls == 1

        env["NO_PROXY"] = "127.0.0.1"
        with (
            process_server(config, tmp_path, env=env) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none") as client,
        ):
            assert client.chat.completions.create(model=model, messages=HELLO).choices
        assert upstream.calls == 2
        assert upstream.via[through_proxy:] == [None, None]  # discovery and chat, direct
