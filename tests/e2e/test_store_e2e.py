"""The inference store under load and failure, through real servers and the openai SDK.

- 5,000 completions (a fifth streamed, some calling tools) through several workers, on
  SQLite and PostgreSQL: listed exactly once, each with the right answer and input;
  deletes and metadata updates visible.
- SIGTERM in a write burst loses nothing; kill -9 with sync durability loses nothing
  that was answered; kill -9 with the default leaves a database that passes its
  integrity check.
- PostgreSQL cut off mid-run (a proxy in front of the shared server): requests keep
  being answered, the unwritten count shows, and every row arrives once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy.engine import make_url
from tests.store.helpers import eventually
from tests.store.pg import admin_host_port, pg_database
from tests.support.fake_openai import FakeOpenAI, expected_message, fake_openai
from tests.support.server import ServerHandle, process_server, thread_server
from tests.support.tcp_proxy import tcp_proxy

from switchyard.config import config_from_dict
from switchyard.store import open_store
from switchyard.store.engine import open_database
from switchyard.store.queries import count_rows

MODEL = "fake/gpt-fake"
TOOLS: list[Any] = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
CONCURRENCY = 48


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


@contextlib.contextmanager
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with pg_database() as url:
            yield url


def config(upstream: FakeOpenAI, **store: Any) -> dict[str, Any]:
    return {"providers": [upstream.provider_config()], "store": store}


def request_body(n: int) -> dict[str, Any]:
    """Request ``n``: every fifth streamed, every seventh calling a tool."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"question {n}"}],
        "metadata": {"n": str(n)},
    }
    if n % 7 == 0:
        body["tools"] = TOOLS
    if n % 5 == 0:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def send(client: openai.AsyncOpenAI, n: int) -> str:
    body = request_body(n)
    if not body.get("stream"):
        return str((await client.chat.completions.create(**body)).id)
    ids = {chunk.id async for chunk in await client.chat.completions.create(**body)}
    assert len(ids) == 1
    return str(ids.pop())


async def send_all(client: openai.AsyncOpenAI, numbers: range) -> dict[int, str]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> tuple[int, str]:
        async with gate:
            return n, await send(client, n)

    return dict(await asyncio.gather(*(one(n) for n in numbers)))


def stored_count(url: str) -> int:
    db = open_database(make_url(url))
    try:
        return count_rows(db)
    finally:
        db.dispose()


async def wait_for_rows(url: str, expected: int) -> None:
    async def written() -> bool:
        return await asyncio.to_thread(stored_count, url) >= expected

    await eventually(written, f"{expected} rows in the store", within=60)
    assert await asyncio.to_thread(stored_count, url) == expected


def check_stored(item: dict[str, Any], answered: dict[int, str]) -> int:
    n = int(item["metadata"]["n"])
    body = request_body(n)
    assert item["id"] == answered[n]
    assert item["input_messages"] == body["messages"]
    expected = {k: v for k, v in expected_message(body).items() if v is not None}
    assert item["choices"][0]["message"] == expected
    assert item["switchyard"]["streamed"] is bool(body.get("stream"))
    if body.get("stream"):
        assert item["usage"]["total_tokens"] == 12
    return n


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_5000_completions_through_several_workers(
    backend: str, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    total = 5000
    with (
        store_url(backend, tmp_path) as url,
        process_server(config(upstream, url=url), tmp_path, args=("--workers", "3")) as server,
    ):
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="unused", max_retries=0
        ) as client:
            answered = await send_all(client, range(total))
            assert len(set(answered.values())) == total  # our ids are unique
            await wait_for_rows(url, total)
            # A scrape reaches one worker, which sums all three (metrics.py); each
            # publishes its unwritten count within a second.
            scraped = {await metric(server, "switchyard_store_written_total") for _ in range(6)}
            assert scraped == {total}

            async def none_unwritten() -> bool:
                return await metric(server, "switchyard_store_unwritten") == 0

            await eventually(none_unwritten, "switchyard_store_unwritten 0", within=10)
            listed = [
                c.model_dump(exclude_none=True)
                async for c in client.chat.completions.list(limit=100)
            ]
            assert sorted(check_stored(item, answered) for item in listed) == list(range(total))

            deleted = [answered[n] for n in range(1, total, 50)]
            for completion_id in deleted:
                assert (await client.chat.completions.delete(completion_id)).deleted
            updated = [answered[n] for n in range(2, total, 50)]
            for completion_id in updated:
                await client.chat.completions.update(completion_id, metadata={"updated": "yes"})

            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.retrieve(deleted[0])
            again = [c.id async for c in client.chat.completions.list(limit=100, order="asc")]
            assert len(again) == len(set(again)) == total - len(deleted)
            assert not set(deleted) & set(again)
            marked = client.chat.completions.list(metadata={"updated": "yes"}, limit=100)
            assert sorted([c.id async for c in marked]) == sorted(updated)
        log = server.log()
    assert "database is locked" not in log
    assert "Traceback" not in log
    assert "not stored" not in log


async def burst_until(server: ServerHandle, stop: asyncio.Event, answered: dict[int, str]) -> None:
    """Send requests until ``stop``, or until the server stops answering."""
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="unused", max_retries=0, timeout=30
    ) as client:
        counter = iter(range(10**9))

        async def worker() -> None:
            while not stop.is_set():
                n = next(counter)
                try:
                    answered[n] = await send(client, n)
                except (openai.APIConnectionError, openai.APIStatusError):
                    return  # the server is going away: this one was never answered

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def interrupt_burst(server: ServerHandle, after: int, sig: int) -> dict[int, str]:
    answered: dict[int, str] = {}
    stop = asyncio.Event()
    burst = asyncio.create_task(burst_until(server, stop, answered))
    await eventually(lambda: len(answered) >= after, f"{after} answers", within=60)
    server.signal(sig)
    await asyncio.to_thread(server.wait, 60)
    stop.set()
    await burst
    return answered


def stored_ids(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[0] for row in db.execute("SELECT id FROM chat_completions")}


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def test_sigterm_in_a_write_burst_loses_nothing(upstream: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    # A long linger keeps hundreds of rows queued at any moment: the flush must write them.
    store = {"url": f"sqlite:///{path}", "flush_interval": 0.5, "batch_size": 5000}
    with process_server(config(upstream, **store), tmp_path, args=("--workers", "2")) as server:
        answered = await interrupt_burst(server, 600, signal.SIGTERM)
        assert server.proc is not None and server.proc.returncode == 0
    assert set(answered.values()) <= stored_ids(path)
    assert "not stored" not in server.log()


async def test_kill_9_with_sync_durability_loses_nothing_answered(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    # With async durability this linger would lose the last second of answers.
    store = {"url": f"sqlite:///{path}", "durability": "sync", "flush_interval": 1.0}
    with process_server(config(upstream, **store), tmp_path) as server:
        answered = await interrupt_burst(server, 400, signal.SIGKILL)
    assert integrity(path) == "ok"
    assert set(answered.values()) <= stored_ids(path)


async def test_kill_9_by_default_leaves_a_sound_database(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    with process_server(config(upstream, url=f"sqlite:///{path}"), tmp_path) as server:
        answered = await interrupt_burst(server, 400, signal.SIGKILL)
    assert integrity(path) == "ok"
    # Rows of the last moments may be lost (that is what sync durability is for); the
    # rest are there, and the file opens again as a store whose reads work.
    assert len(stored_ids(path)) >= len(answered) // 2
    store = await open_store(config_from_dict({"store": {"url": f"sqlite:///{path}"}}, "<t>"))
    try:
        some_id = next(iter(stored_ids(path)))
        assert (await store.get_completion(some_id))["id"] == some_id
    finally:
        await store.close()


async def metric(server: ServerHandle, name: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(server.url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("outage", ["cut", "stall"])
async def test_postgres_cut_off_mid_run(upstream: FakeOpenAI, outage: str) -> None:
    """``cut``: connections reset and refused; ``stall``: open but nothing passes."""
    host, port = admin_host_port()
    with tcp_proxy(host, port) as proxy, pg_database("127.0.0.1", proxy.port) as url:
        direct_url = make_url(url).set(host=host, port=port).render_as_string(False)
        with thread_server(config(upstream, url=url, flush_interval=0.01)) as server:
            failed_before = await metric(server, "switchyard_store_failed_writes_total")
            dropped_before = await metric(server, "switchyard_store_dropped_total")
            async with openai.AsyncOpenAI(
                base_url=server.base_url, api_key="unused", max_retries=0
            ) as client:
                answered = await send_all(client, range(100))
                await wait_for_rows(direct_url, 100)
                if outage == "cut":
                    proxy.cut()
                else:
                    proxy.stall()
                async with asyncio.timeout(20):  # answered while the database is away
                    answered |= await send_all(client, range(100, 400))
                assert await metric(server, "switchyard_store_unwritten") > 0
                if outage == "cut":
                    failed = await metric(server, "switchyard_store_failed_writes_total")
                    assert failed > failed_before
                    async with httpx.AsyncClient() as http:
                        unavailable = await http.get(server.base_url + "/chat/completions")
                    assert unavailable.status_code == 503
                proxy.restore()
                await wait_for_rows(direct_url, 400)
                assert await metric(server, "switchyard_store_unwritten") == 0
                assert await metric(server, "switchyard_store_dropped_total") == dropped_before
                listed = {c.id async for c in client.chat.completions.list(limit=100)}
                assert listed == set(answered.values())
