"""A provider that redirects is a base_url to fix, said so; never followed."""

from __future__ import annotations

import logging

import pytest
from tests.support.scripted_server import Exchange, ScriptedServer

from switchyard.config import ProviderConfig
from switchyard.errors import UpstreamError
from switchyard.providers import create_provider

MOVED = (
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: %s/moved/chat/completions"
    b"\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n<a>301</a>"
)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_redirect_is_an_error_naming_the_base_url(
    stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(exchange: Exchange) -> bytes:
        return MOVED % base.encode()  # to this same server: a followed redirect shows

    server = ScriptedServer(answer)
    base = await server.start()
    provider = create_provider(
        ProviderConfig(id="moved", type="openai", base_url=base + "/v1", api_key="k")
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(UpstreamError) as caught:
            if stream:
                await provider.chat_stream({**body, "stream": True})
            else:
                await provider.chat(body)
        assert caught.value.status == 502
        assert "redirect (HTTP 301)" in caught.value.message
        assert "base_url" in caught.value.message
        assert "/moved/" not in caught.value.message  # the log has it, not clients
        assert f"{base}/moved/chat/completions" in caplog.text
        assert len(server.exchanges) == 1  # not followed, not retried
    finally:
        await provider.close()
        await server.stop()
