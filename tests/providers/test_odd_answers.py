"""Answers a provider (or a proxy in front of it) gets slightly or badly wrong: the
client still gets the provider's status, and a broken stream costs bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from tests.support.scripted_server import Exchange, ScriptedServer

from switchyard.config import ProviderConfig
from switchyard.errors import UpstreamError
from switchyard.providers import create_provider, openai_compat
from switchyard.providers.base import Provider

Answering = Callable[[bytes], Awaitable[Provider]]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def provider_answering() -> AsyncIterator[Answering]:
    """A provider whose every request gets the given raw HTTP answer."""
    made: list[tuple[ScriptedServer, Provider]] = []

    async def make(raw: bytes) -> Provider:
        async def answer(exchange: Exchange) -> bytes:
            return raw

        server = ScriptedServer(answer)
        base = await server.start()
        provider = create_provider(
            ProviderConfig(
                id="odd", type="openai", base_url=base + "/v1", api_key="k", max_retries=0
            )
        )
        made.append((server, provider))
        return provider

    yield make
    for server, provider in made:
        await provider.close()
        await server.stop()


@pytest.mark.parametrize("coding", [b"br", b"utf-8", b""])
async def test_a_rate_limit_stays_a_rate_limit_whatever_its_bodys_coding(
    provider_answering: Answering, coding: bytes
) -> None:
    # br is a compression this client does not undo; "utf-8" and "" name none at all.
    body = b'{"error":{"message":"slow down","type":"requests"}}'
    raw = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Encoding: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (coding, len(body), body)
    provider = await provider_answering(raw)
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(BODY)
    assert caught.value.status == 429
    assert caught.value.headers["retry-after"] == "5"
    if coding != b"br":  # read as it is: the provider's own words reach the client
        assert "slow down" in caught.value.message


async def test_an_answer_whose_coding_names_no_compression_is_read_as_it_is(
    provider_answering: Answering,
) -> None:
    body = b'{"id":"c1","object":"chat.completion","model":"m","choices":[]}'
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: utf-8\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
    ) % (len(body), body)
    provider = await provider_answering(raw)
    assert (await provider.chat(BODY))["id"] == "c1"


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@pytest.mark.parametrize(
    "body", [b"{}", b'{"id":"c1","object":"chat.completion"}', b'{"choices":null}']
)
async def test_a_chat_answer_without_choices_is_a_502_not_a_completion(
    provider_answering: Answering, body: bytes
) -> None:
    provider = await provider_answering(_ok(body))
    with pytest.raises(UpstreamError, match="without a 'choices' list") as caught:
        await provider.chat(BODY)
    assert caught.value.status == 502
    # Answered, perhaps billed: the client's SDK is asked not to send it twice more.
    assert caught.value.headers["x-should-retry"] == "false"


async def test_an_answer_that_is_not_json_is_not_retried_by_the_client(
    provider_answering: Answering,
) -> None:
    provider = await provider_answering(_ok(b"<html>a login page</html>"))
    with pytest.raises(UpstreamError, match='not JSON: "an HTML page') as caught:
        await provider.chat(BODY)
    assert caught.value.headers["x-should-retry"] == "false"


async def test_an_embeddings_answer_without_data_is_a_502(provider_answering: Answering) -> None:
    provider = await provider_answering(_ok(b'{"object":"list","model":"e"}'))
    with pytest.raises(UpstreamError, match="without a 'data' list") as caught:
        await provider.embeddings({"model": "e", "input": "hi"})
    assert caught.value.status == 502
    answered = await provider_answering(_ok(b'{"object":"list","data":[],"model":"e"}'))
    assert (await answered.embeddings({"model": "e", "input": "hi"}))["data"] == []


@pytest.mark.parametrize("vector", [b"[0.5, null]", b"[[0.5, 0.25]]", b'["0.5"]'])
async def test_vectors_that_are_not_numbers_asked_as_base64_are_a_502(
    provider_answering: Answering, vector: bytes
) -> None:
    # The openai SDK asks for base64 by default; a provider answering floats (Ollama)
    # has them encoded here, which a null (some servers' NaN) or a list cannot be.
    body = b'{"object":"list","data":[{"index":0,"embedding":%s}],"model":"e"}' % vector
    provider = await provider_answering(_ok(body))
    asked = {"model": "e", "input": "hi", "encoding_format": "base64"}
    with pytest.raises(UpstreamError, match="a vector that is not a list of numbers") as caught:
        await provider.embeddings(asked)
    assert caught.value.status == 502
    assert caught.value.headers["x-should-retry"] == "false"


async def test_a_stream_event_that_never_ends_is_refused_at_a_bound(
    provider_answering: Answering, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_compat, "MAX_EVENT_BYTES", 1024 * 1024)
    # Lines ended by one newline, never a blank line: one event that would grow for as
    # long as the provider sends.
    line = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n'
    events = line * (3 * 1024 * 1024 // len(line))
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
    ) % (len(events), events)
    provider = await provider_answering(raw)
    chunks = await provider.chat_stream({**BODY, "stream": True})
    with pytest.raises(UpstreamError) as caught:
        async for _ in chunks:
            pass
    assert caught.value.status == 502
    assert "more than 1 MiB of its stream without ending an event" in caught.value.message


@pytest.mark.parametrize(
    ("header", "quoted"),
    [
        (b"x-request-id: req_7f3a9c\r\n", "(the provider's request id: req_7f3a9c)"),
        (b"X-Request-ID: abc def\r\n", None),  # not a plain token: not quoted
        (b"", None),
    ],
)
async def test_a_refusal_names_the_providers_request_id(
    provider_answering: Answering, header: bytes, quoted: str | None
) -> None:
    # What a provider's support asks for; the client's message (and a 5xx's log line).
    body = b'{"error":{"message":"The server had an error","type":"server_error"}}'
    raw = (
        b"HTTP/1.1 400 Bad Request\r\n%sContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
    ) % (header, len(body), body)
    provider = await provider_answering(raw)
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(BODY)
    message = caught.value.message
    assert message.startswith("provider 'odd' refused the request (HTTP 400): The server had")
    if quoted is None:
        assert "request id" not in message
    else:
        assert message.endswith(quoted)


def _choice(index: int, **fields: object) -> dict[str, object]:
    return {"index": index, "delta": {"content": "x"}, "finish_reason": None, **fields}


def _event(*choices: dict[str, object], usage: dict[str, int] | None = None) -> bytes:
    chunk: dict[str, object] = {"id": "c", "object": "chat.completion.chunk"}
    chunk["choices"] = list(choices)
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def _streamed(
    events: list[bytes],
    body: dict[str, object],
    kind: str = "openai_compatible",
    framing: bytes = b"Transfer-Encoding: chunked",
) -> list[dict[str, object]]:
    """What the provider yields of ``events``, each sent in a read of its own (a chunked
    body ended cleanly, with no [DONE]); raises what it raises at the end."""

    async def answer(exchange: Exchange) -> bytes | None:
        chunked = framing.startswith(b"Transfer")
        exchange.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%s\r\n\r\n" % framing
        )
        for event in events:
            exchange.writer.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            await exchange.writer.drain()
            await asyncio.sleep(0.03)
        return b"0\r\n\r\n" if chunked else None  # None: the connection closes

    server = ScriptedServer(answer)
    base = await server.start()
    config = ProviderConfig(id="odd", type=kind, base_url=base + "/v1", api_key="k")
    provider = create_provider(config.model_copy(update={"max_retries": 0}))
    try:
        stream = await provider.chat_stream({**BODY, "stream": True, **body})
        return [chunk async for batch in stream for chunk in batch]
    finally:
        await provider.close()
        await server.stop()


async def test_a_cut_stream_of_several_choices_is_refused_however_its_reads_fell() -> None:
    # Choice 1 said its last long before the end; choice 0 finished in the last read.
    events = [_event(_choice(0)), _event(_choice(1)), _event(_choice(0)), _event(_choice(0))]
    events.append(_event(_choice(0, finish_reason="stop")))
    with pytest.raises(UpstreamError, match="before the stream finished"):
        await _streamed(events, {"n": 2})
    events.append(_event(_choice(1, finish_reason="length")))
    assert len(await _streamed(events, {"n": 2})) == 6  # both finished: whole


async def test_a_stream_cut_before_the_usage_it_was_asked_for_is_refused() -> None:
    asked: dict[str, object] = {"stream_options": {"include_usage": True}}
    events = [_event(_choice(0)), _event(_choice(0, finish_reason="stop"))]
    assert len(await _streamed(events, {})) == 2  # no usage asked: finished is whole
    # A body ended by its own framing, without usage: a provider that sends none.
    assert len(await _streamed(events, asked)) == 2
    with pytest.raises(UpstreamError, match="without its usage chunk"):
        await _streamed(events, asked, framing=b"Connection: close")  # maybe cut
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    events.append(_event(usage=usage))
    closed = await _streamed(events, asked, framing=b"Connection: close")
    assert closed[-1]["usage"] == usage


async def test_a_role_given_again_is_dropped_from_later_deltas() -> None:
    # Ollama, TGI and Together repeat the role in every delta; the openai SDK's stream
    # helpers join the pieces ("assistantassistant"), a role the next request is refused.
    role = {"role": "assistant", "content": "x"}
    events = [
        _event(_choice(0, delta=role), _choice(1, delta=role)),
        _event(_choice(0, delta=role)),
        _event(_choice(1, delta={"role": "tool", "content": "y"})),  # another: kept
        _event(_choice(0, delta=role, finish_reason="stop"), _choice(1, finish_reason="stop")),
    ]
    chunks = await _streamed(events, {"n": 2})
    deltas = [(c["index"], c["delta"]) for chunk in chunks for c in chunk["choices"]]  # type: ignore[attr-defined]
    assert deltas == [
        (0, role),
        (1, role),
        (0, {"content": "x"}),
        (1, {"role": "tool", "content": "y"}),
        (0, {"content": "x"}),
        (1, {"content": "x"}),
    ]
    # OpenAI gives a role once: its streams are not looked at (a provider's quirk).
    openai = await _streamed(events, {"n": 2}, "openai")
    assert all(c["delta"] == role for c in openai[1]["choices"])  # type: ignore[index]
