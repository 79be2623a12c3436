"""The stored completions API through a real server and the official openai SDK."""

from __future__ import annotations

import gzip
import secrets
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.support.fake_openai import PROVIDER_ID, FakeOpenAI, expected_message, fake_openai
from tests.support.server import ServerHandle, thread_server

from switchyard.server import stream as stream_module

MODEL = "fake/gpt-fake"
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}},
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


def server_config(upstream: FakeOpenAI, store: dict[str, Any]) -> dict[str, Any]:
    return {"providers": [upstream.provider_config()], "store": store}


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store") / "store.db"


@pytest.fixture(scope="module")
def server(upstream: FakeOpenAI, store_file: Path) -> Iterator[ServerHandle]:
    with thread_server(server_config(upstream, {"url": f"sqlite:///{store_file}"})) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(server: ServerHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def ask(text: str) -> list[Any]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_a_completion_is_stored_under_our_own_id(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ask("hello"), metadata={"a": "1"})
    assert answer.id != PROVIDER_ID
    assert answer.id.startswith("chatcmpl-")
    stored = client.chat.completions.retrieve(answer.id)
    assert stored.id == answer.id
    assert stored.model == MODEL
    assert stored.choices[0].message.content == "echo: hello"
    assert stored.metadata == {"a": "1"}
    extra = stored.model_extra or {}
    assert extra["input_messages"] == ask("hello")
    assert extra["switchyard"]["provider_completion_id"] == PROVIDER_ID
    assert extra["switchyard"]["provider_id"] == "fake"


def test_a_stored_completion_is_the_answer_the_client_got(
    server: ServerHandle, client: openai.OpenAI
) -> None:
    # The handler's answer goes into its row unparsed (bench/NOTES.md, section 57): what
    # a read gives back is that answer, plus what only the store adds.
    sent = client.chat.completions.with_raw_response.create(model=MODEL, messages=ask("same"))
    answer = sent.http_response.json()
    stored = httpx.get(f"{server.base_url}/chat/completions/{answer['id']}").json()
    added = {"metadata", "input_messages", "switchyard"}
    assert {k: v for k, v in stored.items() if k not in added} == answer


def test_a_stream_with_tool_calls_is_stored_assembled(client: openai.OpenAI) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": ask("weather?"), "tools": TOOLS}
    stream = client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}
    )
    ids = {chunk.id for chunk in stream}
    (completion_id,) = ids
    stored = client.chat.completions.retrieve(completion_id).model_dump()
    choice = stored["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == expected_message(body)["tool_calls"]
    assert stored["usage"]["total_tokens"] == 12
    assert stored["switchyard"]["streamed"] is True
    assert stored["switchyard"]["provider_completion_id"] == PROVIDER_ID


def test_a_stream_with_several_choices_and_logprobs(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=ask("two of them"), stream=True, n=2, logprobs=True
    )
    completion_id = {chunk.id for chunk in stream}.pop()
    stored = client.chat.completions.retrieve(completion_id)
    assert [c.message.content for c in stored.choices] == ["echo: two of them"] * 2
    assert stored.choices[1].logprobs is not None
    tokens = [t.token for t in stored.choices[1].logprobs.content or []]
    assert "".join(tokens) == "echo: two of them"


def test_a_stream_of_text_is_stored_as_its_chunks_and_one_of_many_choices_assembled(
    client: openai.OpenAI, store_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept as the tap's chunks (mostly texts), a text stream is assembled when read;
    # two choices with logprobs are whole chunks, ~250 bytes a token, so past a bound
    # the writer assembles that stream before storing it. Both read back the same way.
    # (The fake streams five chunks: the server runs in this process, so the bound is
    # set to what lies between the two streams' counts of whole chunks.)
    monkeypatch.setattr(stream_module, "MAX_WHOLE_STORED", 3)
    text = " ".join(f"word{n}" for n in range(60))
    ids = {}
    for n in (1, 2):
        stream = client.chat.completions.create(
            model=MODEL, messages=ask(text), stream=True, n=n, logprobs=n == 2
        )
        ids[n] = {chunk.id for chunk in stream}.pop()
    for n, completion_id in ids.items():
        stored = client.chat.completions.retrieve(completion_id)
        assert stored.id == completion_id
        assert [c.message.content for c in stored.choices] == [f"echo: {text}"] * n
    with sqlite3.connect(store_file) as db:
        kinds = dict(db.execute("SELECT id, json_type(completion) FROM chat_completions"))
    assert (kinds[ids[1]], kinds[ids[2]]) == ("array", "object")


def make_batch(client: openai.OpenAI, count: int) -> tuple[str, list[str]]:
    """``count`` completions tagged with a new batch name: the name and their ids."""
    batch = secrets.token_hex(4)
    made = [
        client.chat.completions.create(
            model=MODEL, messages=ask(f"n{n}"), metadata={"batch": batch}
        ).id
        for n in range(count)
    ]
    return batch, made


def test_listing_filters_and_pages_like_openai(client: openai.OpenAI) -> None:
    batch, made = make_batch(client, 12)
    oldest_first = client.chat.completions.list(metadata={"batch": batch}, limit=5, order="asc")
    assert [c.id for c in oldest_first] == made
    page = client.chat.completions.list(metadata={"batch": batch}, limit=5)  # newest first
    assert [c.id for c in page.data] == made[::-1][:5]
    assert page.has_more is True
    assert [c.id for c in page] == made[::-1]  # auto-pagination follows last_id
    by_model = client.chat.completions.list(model=MODEL, limit=3)
    assert all(c.model == MODEL for c in by_model.data)
    assert not list(client.chat.completions.list(model="fake/other", limit=3))


def test_messages_list_with_ids_and_pages(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ask("messages"))
    first = client.chat.completions.messages.list(answer.id, limit=1)
    assert [m.id for m in first.data] == [f"{answer.id}-0"]
    assert [m.content for m in first] == ["be brief", "messages"]
    newest = client.chat.completions.messages.list(answer.id, order="desc")
    assert [m.content for m in newest.data] == ["messages", "be brief"]


def test_metadata_update_and_delete(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ask("keep?"))
    updated = client.chat.completions.update(answer.id, metadata={"verdict": "good"})
    assert updated.metadata == {"verdict": "good"}
    assert client.chat.completions.retrieve(answer.id).metadata == {"verdict": "good"}
    deleted = client.chat.completions.delete(answer.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        answer.id,
        True,
        "chat.completion.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(answer.id)


def test_store_false_is_never_stored(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ask("secret"), store=False)
    assert answer.choices[0].message.content == "echo: secret"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(answer.id)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("after=chatcmpl-unknown", "after"),
        ("metadata[k]x=v", "metadata[k]x"),
        ("metadata[k=v", "metadata[k"),
        ("metadata=k", "metadata"),
        # PostgreSQL refuses NUL in a query: a 400 on every backend, not a 500 there.
        ("after=%00", "after"),
        ("model=a%00", "model"),
        ("metadata[k]=%00", "metadata[k]"),
        ("metadata[%00]=v", "metadata[\x00]"),
        ("metadata[k]=a&metadata[k]=b", "metadata[k]"),  # which one would count?
    ],
)
def test_bad_listing_parameters_are_400s(server: ServerHandle, query: str, param: str) -> None:
    answer = httpx.get(f"{server.base_url}/chat/completions?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_unknown_ids_and_bad_updates(server: ServerHandle) -> None:
    missing = httpx.get(f"{server.base_url}/chat/completions/chatcmpl-unknown")
    assert missing.status_code == 404
    assert "chatcmpl-unknown" in missing.json()["error"]["message"]
    assert (
        httpx.get(f"{server.base_url}/chat/completions/chatcmpl-unknown/messages").status_code
        == 404
    )
    bad = httpx.post(f"{server.base_url}/chat/completions/x", json={"metadata": {"k": 1}})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "metadata"
    more = httpx.post(
        f"{server.base_url}/chat/completions/x", json={"metadata": {"k": "v"}, "model": "m"}
    )
    assert more.status_code == 400
    assert more.json()["error"]["param"] == "model"
    assert "Only the metadata" in more.json()["error"]["message"]


def test_nul_characters_are_400s_on_every_route(server: ServerHandle) -> None:
    for method in ("GET", "POST", "DELETE"):
        answer = httpx.request(method, f"{server.base_url}/chat/completions/a%00b", json={})
        assert answer.status_code == 400, method
        assert answer.json()["error"]["param"] == "completion_id"
    body = {"model": MODEL, "messages": ask("x"), "metadata": {"k": "a\u0000"}}
    refused = httpx.post(f"{server.base_url}/chat/completions", json=body)
    assert refused.status_code == 400 and "NUL" in refused.json()["error"]["message"]
    update = httpx.post(
        f"{server.base_url}/chat/completions/x", json={"metadata": {"k\u0000": "v"}}
    )
    assert update.status_code == 400 and update.json()["error"]["param"] == "metadata"


def test_a_body_after_a_byte_order_mark_is_answered_and_stored(
    server: ServerHandle, client: openai.OpenAI
) -> None:
    body = b'\xef\xbb\xbf{"model": "%s", "messages": [{"role": "user", "content": "bom"}]}'
    answer = httpx.post(
        f"{server.base_url}/chat/completions",
        content=body % MODEL.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    stored = client.chat.completions.retrieve(answer.json()["id"])
    assert stored.choices[0].message.content == "echo: bom"


@pytest.mark.parametrize(
    ("path", "coding", "compress"),
    [
        ("/chat/completions", "gzip", gzip.compress),
        ("/chat/completions", "deflate", zlib.compress),
        ("/embeddings", "deflate", zlib.compress),
        ("/chat/completions", "br", lambda data: b"\x1b\x03" + data[::-1]),  # not JSON
    ],
)
def test_a_compressed_body_is_415_saying_so(
    server: ServerHandle, path: str, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = compress(b'{"model": "%s", "messages": []}' % MODEL.encode())
    answer = httpx.post(
        f"{server.base_url}{path}",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert answer.status_code == 415
    message = answer.json()["error"]["message"]
    assert "uncompressed" in message and f"({coding})" in message


def test_any_metadata_key_a_create_takes_can_be_filtered_on(client: openai.OpenAI) -> None:
    metadata = {"line\nbreak": "v1", "": "empty key", "tab\tkey": "v2"}
    answer = client.chat.completions.create(model=MODEL, messages=ask("keys"), metadata=metadata)
    for key, value in metadata.items():
        listed = client.chat.completions.list(metadata={key: value})
        assert [c.id for c in listed.data] == [answer.id], repr(key)


def test_deleting_each_completion_while_paging_reaches_them_all(client: openai.OpenAI) -> None:
    for order in ("asc", "desc"):
        batch, made = make_batch(client, 5)
        # The SDK asks for the page after the last id of the one before, deleted by then.
        pages = client.chat.completions.list(metadata={"batch": batch}, limit=2, order=order)
        deleted = []
        for completion in pages:
            client.chat.completions.delete(completion.id)
            deleted.append(completion.id)
        assert deleted == (made if order == "asc" else made[::-1])
        assert client.chat.completions.list(metadata={"batch": batch}).data == []


def test_the_routes_are_in_the_openapi_document(server: ServerHandle) -> None:
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert set(paths["/v1/chat/completions"]) == {"get", "post"}
    assert set(paths["/v1/chat/completions/{completion_id}"]) == {"get", "post", "delete"}
    assert "get" in paths["/v1/chat/completions/{completion_id}/messages"]


def test_the_opt_in_policy(upstream: FakeOpenAI, tmp_path: Path) -> None:
    config = server_config(upstream, {"url": f"sqlite:///{tmp_path / 's.db'}", "policy": "opt-in"})
    with (
        thread_server(config) as handle,
        openai.OpenAI(base_url=handle.base_url, api_key="unused", max_retries=0) as sdk,
    ):
        skipped = sdk.chat.completions.create(model=MODEL, messages=ask("a"))
        kept = sdk.chat.completions.create(model=MODEL, messages=ask("b"), store=True)
        assert [c.id for c in sdk.chat.completions.list()] == [kept.id]
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.retrieve(skipped.id)


def test_with_the_store_off_the_routes_say_so(upstream: FakeOpenAI) -> None:
    with thread_server(server_config(upstream, {"enabled": False})) as handle:
        answer = httpx.get(f"{handle.base_url}/chat/completions")
        assert answer.status_code == 404
        assert "store.enabled" in answer.json()["error"]["message"]
