"""The write path under failure: retries, refused rows, a full queue, shutdown, outages."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import sqlalchemy as sa
from tests.store.helpers import call, eventually, make_store, sqlite_url
from tests.store.pg import admin_host_port, pg_database
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

from switchyard import metrics
from switchyard.sink import StoredCall
from switchyard.store import StoreUnavailableError, backends, batch, spill, writer
from switchyard.store.engine import Database
from switchyard.store.failures import is_transient
from switchyard.store.queries import count_rows, insert_rows
from switchyard.store.record import record_of, row_values

Rows = list[dict[str, Any]]


def counter(metric: Any) -> float:
    return float(metric._value.get())


def unwritten() -> float:
    value = metrics.REGISTRY.get_sample_value("switchyard_store_unwritten")
    assert value is not None
    return value


class Snapshot:
    """Counter values now, to assert on what a test added (metrics are process-wide)."""

    def __init__(self) -> None:
        self.before = {name: counter(getattr(metrics, name)) for name in self.NAMES}

    NAMES = ("STORE_WRITTEN", "STORE_DROPPED", "STORE_FAILED_WRITES")

    def added(self, name: str) -> float:
        return counter(getattr(metrics, name)) - self.before[name]


def operational_error() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT", None, Exception("database is down"))


def database_down(db: Database, rows: Rows) -> None:
    raise operational_error()


@pytest.fixture
def patch_insert(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Callable[[Database, Rows], None]], None]:
    # Faults are injected into this process, so these tests write in a thread
    # (make_store(..., writer="thread")); the writer logic around them is the same.
    def install(fake: Callable[[Database, Rows], None]) -> None:
        monkeypatch.setattr(batch, "insert_rows", fake)

    return install


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(writer, "RETRY_MAX_S", 0.05)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "store.db")


@pytest.mark.usefixtures("fast_retries")
async def test_transient_failures_are_retried_until_written(url: str, patch_insert: Any) -> None:
    failures = iter(range(3))

    def flaky(db: Database, rows: Rows) -> None:
        if next(failures, None) is not None:
            raise operational_error()
        insert_rows(db, rows)

    patch_insert(flaky)
    snap = Snapshot()
    store = await make_store(url, writer="thread")
    for n in range(10):
        await store.completion_finished(call(n))
    await store.close()
    assert count_rows(store.db) == 10
    assert snap.added("STORE_FAILED_WRITES") == 3
    assert snap.added("STORE_WRITTEN") == 10
    assert snap.added("STORE_DROPPED") == 0


async def test_a_refused_row_costs_only_itself_and_is_logged(
    url: str, patch_insert: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def picky(db: Database, rows: Rows) -> None:
        if any(row[0] == "chatcmpl-test-000003" for row in rows):
            raise sa.exc.IntegrityError("INSERT", None, Exception("value too long"))
        insert_rows(db, rows)

    patch_insert(picky)
    snap = Snapshot()
    store = await make_store(url, writer="thread", batch_size=100, flush_interval=0.2)
    for n in range(6):
        await store.completion_finished(call(n))
    await store.close()
    assert count_rows(store.db) == 5
    assert snap.added("STORE_DROPPED") == 1
    assert "refused completion chatcmpl-test-000003" in caplog.text


def hold_inserts(patch_insert: Any) -> tuple[threading.Event, threading.Event]:
    """Make each insert wait for ``release``; ``entered`` is set once one is waiting."""
    entered, release = threading.Event(), threading.Event()

    def held(db: Database, rows: Rows) -> None:
        entered.set()
        release.wait(10)
        insert_rows(db, rows)

    patch_insert(held)
    return entered, release


async def test_a_full_queue_drops_are_counted_and_logged(
    url: str, patch_insert: Any, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = hold_inserts(patch_insert)
    snap = Snapshot()
    store = await make_store(url, writer="thread", queue_size=5, batch_size=1, flush_interval=0)
    await store.completion_finished(call(0))
    assert await asyncio.to_thread(entered.wait, 5)  # the writer holds call 0 in the database
    for n in range(1, 21):
        await store.completion_finished(call(n))  # never blocks the caller
    await asyncio.sleep(0)  # handed over calls join the queue once this iteration ends
    assert snap.added("STORE_DROPPED") == 15
    assert unwritten() >= 6
    # The first drop is logged at once; the rest in summaries, at the latest on close.
    assert "1 completions not stored (queue full); 1 since start" in caplog.text
    release.set()
    await store.close()
    assert "14 completions not stored (queue full); 15 since start" in caplog.text
    assert count_rows(store.db) == 6


@pytest.mark.usefixtures("fast_retries")
async def test_close_saves_what_it_cannot_write_and_the_next_start_writes_it(
    url: str, patch_insert: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    patch_insert(database_down)
    snap = Snapshot()
    store = await make_store(url, tmp_path, writer="thread", close_timeout=0.3)
    for n in range(7):
        await store.completion_finished(call(n))
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 5
    assert snap.added("STORE_DROPPED") == 0
    saved = list((tmp_path / "store-unwritten").iterdir())
    assert len(saved) == 1 and saved[0].suffix == ".jsonl"
    assert "database unavailable at shutdown; 7 completions saved to" in caplog.text
    assert count_rows(store.db) == 0

    patch_insert(insert_rows)  # the database is back
    store = await make_store(url, tmp_path, writer="thread")
    try:
        await eventually(lambda: count_rows(store.db) == 7, "the saved completions written")
        await eventually(lambda: not any(saved[0].parent.iterdir()), "the file deleted")
        assert (await store.get_completion("chatcmpl-test-000006"))["choices"][0]["message"][
            "content"
        ] == "answer 6"
    finally:
        await store.close()


HOLD_LOCK = """
import fcntl, sys, time
held = open(sys.argv[1], "rb")
fcntl.flock(held.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


async def test_a_saved_file_is_claimed_unless_a_live_process_holds_it(
    url: str, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "store-unwritten"
    held = spill.save(spill_dir, [record_of(call(n)) for n in range(3)])
    # Claimed by a process that died: the lock went with it, the name stayed.
    orphan = spill.save(spill_dir, [record_of(call(n)) for n in range(3, 5)])
    orphan = orphan.rename(orphan.with_suffix(".claimed"))
    holder = await asyncio.create_subprocess_exec(  # a live process's claim
        sys.executable, "-c", HOLD_LOCK, str(held), stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"locked\n"
    store = await make_store(url, tmp_path)
    try:
        await eventually(lambda: count_rows(store.db) == 2, "the orphaned file written")
        await eventually(lambda: not orphan.exists(), "the orphaned file deleted")
        assert [p.name for p in spill_dir.iterdir()] == [held.name]
    finally:
        await store.close()
        holder.kill()
        await holder.wait()


def test_a_saved_stream_is_written_as_sse_events_and_claimed_back_whole(tmp_path: Path) -> None:
    # A handler hands over a stream's chunks as a JSON array; on disk they are SSE
    # events, which the writers of earlier versions read too (after a rollback).
    chunks = [{"id": "c-1", "choices": [{"index": 0, "delta": {"content": t}}]} for t in "ab"]
    array = b"[" + b",".join(orjson.dumps(c) for c in chunks) + b"]"
    record = (
        b'{"model": "m", "messages": []}',
        array,
        "p",
        1.0,
        2.0,
        None,
        True,
        None,
        "c-1",
        False,
    )
    path = spill.save(tmp_path, [record])
    assert orjson.loads(path.read_bytes())["answer"].startswith("data: {")
    claim = spill.claim_one(tmp_path)
    assert claim is not None
    (claimed,) = claim.records
    assert claimed[1] != array and row_values(claimed) == row_values(record)
    claim.release(delete=True)


@pytest.mark.usefixtures("fast_retries")
async def test_a_claimed_file_is_kept_if_its_completions_cannot_be_saved_again(
    url: str, patch_insert: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(directory: Path, records: Any) -> Path:
        raise OSError(28, "No space left on device")

    saved = spill.save(tmp_path / "store-unwritten", [record_of(call(n)) for n in range(4)])
    patch_insert(database_down)
    snap = Snapshot()
    store = await make_store(url, tmp_path, writer="thread", close_timeout=0.3)
    await eventually(lambda: snap.added("STORE_FAILED_WRITES") >= 1, "the claimed rows tried")
    monkeypatch.setattr(spill, "save", disk_full)
    await store.close()
    assert snap.added("STORE_DROPPED") == 4
    assert [p.suffix for p in saved.parent.iterdir()] == [".claimed"]  # kept for next time

    patch_insert(insert_rows)
    store = await make_store(url, tmp_path, writer="thread")
    try:
        await eventually(lambda: count_rows(store.db) == 4, "the kept file written")
        await eventually(lambda: not any(saved.parent.iterdir()), "the file deleted")
    finally:
        await store.close()


async def test_sync_durability_waits_at_most_sync_timeout(
    url: str, patch_insert: Any, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def slow(db: Database, rows: Rows) -> None:
        release.wait(10)
        insert_rows(db, rows)

    patch_insert(slow)
    store = await make_store(url, writer="thread", durability="sync", sync_timeout=0.2)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        await store.completion_finished(call(1))
    assert 0.15 < time.monotonic() - started < 2
    assert "answered before its row is written" in caplog.text
    release.set()
    await store.close()
    assert count_rows(store.db) == 1


async def test_sync_durability_waits_for_room_in_a_full_queue(url: str, patch_insert: Any) -> None:
    entered, release = hold_inserts(patch_insert)
    snap = Snapshot()
    store = await make_store(
        url, writer="thread", durability="sync", sync_timeout=10, queue_size=1, batch_size=1
    )
    first = asyncio.create_task(store.completion_finished(call(0)))
    assert await asyncio.to_thread(entered.wait, 5)  # call 0 is in the database, held
    rest = [asyncio.create_task(store.completion_finished(call(n))) for n in (1, 2)]
    await asyncio.sleep(0.05)
    assert store.writer.accepted == 2  # call 1 fills the queue; call 2 waits for room
    release.set()
    async with asyncio.timeout(10):
        await asyncio.gather(first, *rest)
    assert count_rows(store.db) == 3
    assert snap.added("STORE_DROPPED") == 0
    await store.close()


@pytest.fixture
def pg_behind_proxy() -> Iterator[tuple[str, TcpProxy]]:
    with tcp_proxy(*admin_host_port()) as proxy, pg_database("127.0.0.1", proxy.port) as url:
        yield url, proxy


@pytest.mark.usefixtures("fast_retries")
async def test_postgres_down_at_start_then_back(pg_behind_proxy: tuple[str, TcpProxy]) -> None:
    url, proxy = pg_behind_proxy
    proxy.cut()
    store = await make_store(url)  # must not fail: the server keeps serving
    try:
        assert not store.writer.ready
        with pytest.raises(StoreUnavailableError):
            await store.get_completion("chatcmpl-x")
        for n in range(5):
            await store.completion_finished(call(n))
        proxy.restore()
        async with asyncio.timeout(30):
            await store.writer.wait_settled(5)
        assert (await store.get_completion("chatcmpl-test-000004"))["id"] == "chatcmpl-test-000004"
    finally:
        await store.close()


async def test_close_keeps_to_close_timeout_while_the_schema_waits_to_be_made(
    pg_behind_proxy: tuple[str, TcpProxy], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Down at start: the writer retries the migration with a back-off; a back-off
    # begun before shutdown must not hold the save past close_timeout (a supervisor's
    # kill, 30 s after SIGTERM in Kubernetes, would lose what was queued).
    monkeypatch.setattr(writer, "RETRY_FIRST_S", 20.0)
    url, proxy = pg_behind_proxy
    proxy.cut()
    store = await make_store(url, tmp_path, writer="thread", close_timeout=0.5)
    for n in range(3):
        await store.completion_finished(call(n))
    await asyncio.sleep(0.3)  # the writer is in its back-off now
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 5
    saved = list((tmp_path / "store-unwritten").iterdir())
    assert len(saved) == 1 and len(saved[0].read_text().splitlines()) == 3


@pytest.mark.usefixtures("fast_retries")
async def test_postgres_cut_mid_run_loses_nothing(pg_behind_proxy: tuple[str, TcpProxy]) -> None:
    url, proxy = pg_behind_proxy
    snap = Snapshot()
    store = await make_store(url, flush_interval=0)
    try:
        for n in range(20):
            await store.completion_finished(call(n))
        await store.writer.wait_all_settled()
        proxy.cut()
        for n in range(20, 60):
            await store.completion_finished(call(n))
        await eventually(lambda: snap.added("STORE_FAILED_WRITES") >= 2, "writes fail")
        with pytest.raises(StoreUnavailableError):
            await store.get_completion("chatcmpl-test-000001")
        assert unwritten() >= 1
        proxy.restore()
        async with asyncio.timeout(30):
            await store.writer.wait_all_settled()
        assert count_rows(store.db) == 60
        assert unwritten() == 0
        assert snap.added("STORE_DROPPED") == 0
    finally:
        await store.close()


async def test_a_completion_that_cannot_be_stored_costs_only_itself(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The conversion runs on the request's own path now: it must neither raise nor
    # hold up the rows around it.
    snap = Snapshot()
    store = await make_store(url)
    await store.completion_finished(call(1))
    broken = call(2)
    broken.completion = ["not", "a", "completion"]  # type: ignore[assignment]
    await store.completion_finished(broken)
    await store.completion_finished(call(3))
    await store.close()
    assert count_rows(store.db) == 2
    assert snap.added("STORE_DROPPED") == 1
    assert "cannot convert a completion of fake: the answer is not a JSON object" in caplog.text


async def test_batches_fit_an_old_sqlite_bound_parameter_limit(url: str) -> None:
    # SQLite before 3.32 allows 999 bound parameters per statement: a 300-row batch
    # must still go in whole, not be retried forever.
    store = await make_store(url)
    dbapi = store.db.writer_connection().connection.dbapi_connection
    assert dbapi is not None
    dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    rows = [row_values(record_of(call(n))) for n in range(300)]
    await asyncio.to_thread(insert_rows, store.db, rows)
    await store.close()
    assert count_rows(store.db) == 300


def writer_process(store: Any) -> Any:
    task = store.writer._backend._child
    assert task is not None and task.done(), "no writer process running"
    return task.result()


async def test_rows_are_written_by_a_process_of_their_own(url: str) -> None:
    store = await make_store(url, flush_interval=0)
    try:
        await store.completion_finished(call(1))
        await store.writer.wait_all_settled()
        child = writer_process(store)
        cmdline = (await asyncio.to_thread(Path(f"/proc/{child.pid}/cmdline").read_bytes)).split(
            b"\0"
        )
        assert cmdline[1:3] == [b"-m", b"switchyard.store.child"]
        assert (await store.get_completion("chatcmpl-test-000001"))["choices"][0]["message"][
            "content"
        ] == "answer 1"
    finally:
        await store.close()
    assert child.returncode == 0  # it ended when the worker closed its input


async def test_a_locked_database_is_a_failure_worth_retrying(url: str) -> None:
    store = await make_store(url)
    db = store.db
    blocker = sqlite3.connect(db.sqlite_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        writer_dbapi = db.writer_connection().connection.dbapi_connection
        assert writer_dbapi is not None
        writer_dbapi.execute("PRAGMA busy_timeout = 50")
        rows = [row_values(record_of(call(1)))]
        with pytest.raises(sa.exc.OperationalError, match="locked") as locked:
            await asyncio.to_thread(insert_rows, db, rows)
        assert is_transient(locked.value)
        blocker.execute("ROLLBACK")
        await asyncio.to_thread(insert_rows, db, rows)  # on a fresh connection
        assert count_rows(db) == 1
    finally:
        blocker.close()
        await store.close()


@pytest.mark.usefixtures("fast_retries")
async def test_a_writer_process_that_dies_is_replaced_and_loses_nothing(url: str) -> None:
    snap = Snapshot()
    store = await make_store(url, flush_interval=0)
    try:
        for n in range(10):
            await store.completion_finished(call(n))
        await store.writer.wait_all_settled()
        first = writer_process(store)
        first.kill()
        await first.wait()
        for n in range(10, 30):
            await store.completion_finished(call(n))
        async with asyncio.timeout(30):
            await store.writer.wait_all_settled()
        assert writer_process(store).pid != first.pid
        assert snap.added("STORE_FAILED_WRITES") >= 1  # the batch it was sent came back
        assert count_rows(store.db) == 30
        assert snap.added("STORE_DROPPED") == 0
        assert snap.added("STORE_WRITTEN") == 30
    finally:
        await store.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_to_the_group_leaves_the_writer_process_to_its_worker(
    url: str, signum: int
) -> None:
    # Ctrl-C, and a service manager stopping the service, signal the whole process
    # group: the writer must keep going until its worker has handed over its last rows
    # and closed its input.
    store = await make_store(url, flush_interval=0)
    try:
        await store.completion_finished(call(1))
        await store.writer.wait_all_settled()
        child = writer_process(store)
        os.kill(child.pid, signum)
        await asyncio.sleep(0.2)
        await store.completion_finished(call(2))
        await store.writer.wait_all_settled()
        assert writer_process(store) is child
        assert child.returncode is None
    finally:
        await store.close()
    assert count_rows(store.db) == 2


async def test_a_writer_process_that_cannot_start_leaves_the_writes_to_a_thread(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An interpreter that cannot run the writer process (here: a module that is not
    # there) must not hold the rows back: one error line, then a thread writes them.
    monkeypatch.setattr(backends, "CHILD_MODULE", "switchyard.store.no_such_module")
    snap = Snapshot()
    store = await make_store(url, flush_interval=0)
    try:
        for n in range(3):
            await store.completion_finished(call(n))
        async with asyncio.timeout(30):
            await store.writer.wait_all_settled()
        assert count_rows(store.db) == 3
        assert snap.added("STORE_DROPPED") == 0
        assert caplog.text.count("did not start") == 1
        assert "writing in a thread of this worker instead" in caplog.text
    finally:
        await store.close()


@pytest.mark.usefixtures("fast_retries")
async def test_a_writer_process_that_stops_answering_is_replaced(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process stuck in a database call must not hold the queue forever.
    monkeypatch.setattr(backends, "CHILD_MODULE", "tests.store.stuck_writer")
    monkeypatch.setattr(backends, "REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(backends, "CHILD_EXIT_TIMEOUT_S", 0.5)
    snap = Snapshot()
    store = await make_store(url, flush_interval=0)
    try:
        await store.completion_finished(call(1))
        await eventually(lambda: snap.added("STORE_FAILED_WRITES") >= 1, "the write times out")
        monkeypatch.setattr(backends, "CHILD_MODULE", "switchyard.store.child")
        async with asyncio.timeout(30):
            await store.writer.wait_all_settled()
        assert count_rows(store.db) == 1
        assert snap.added("STORE_DROPPED") == 0
    finally:
        await store.close()


def test_a_stream_without_chunks_keeps_one_id_however_often_its_row_is_made() -> None:
    # A batch retried after a commit whose answer was lost is made into rows again:
    # the same id both times, or the insert would store the stream twice.
    empty = StoredCall({"model": "m", "messages": []}, "fake", 1.0, 2.0, events=b"")
    record = record_of(empty)
    assert row_values(record)[0] == row_values(record)[0]
    empty.completion_id = "chatcmpl-ours"
    assert row_values(record_of(empty))[0] == "chatcmpl-ours"


@pytest.mark.usefixtures("fast_retries")
async def test_a_schema_it_cannot_migrate_at_start_is_logged_and_retried(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Not a database error: alembic's for a database a newer version migrated, say.
    real_migrate = writer.migrate
    attempts = iter(range(2))

    def newer_schema_at_first(db: Database) -> None:
        if next(attempts, None) is not None:
            raise RuntimeError("Can't locate revision identified by '0099'")
        real_migrate(db)

    monkeypatch.setattr(writer, "migrate", newer_schema_at_first)
    store = await make_store(url, writer="thread")  # starts, where it used to raise
    assert "cannot migrate its database at start" in caplog.text
    await store.completion_finished(call(1))
    await eventually(lambda: store.writer.ready, "the schema migrated on a retry")
    await store.close()
    assert count_rows(store.db) == 1
    said = [r for r in caplog.records if "cannot migrate its database" in r.getMessage()]
    assert len(said) == 2 and sum(r.exc_info is not None for r in said) == 1  # one traceback


def test_a_claimed_file_is_kept_only_when_one_of_its_own_rows_was_lost() -> None:
    first, second = cast(spill.Claim, "first file"), cast(spill.Claim, "second file")
    claims = spill.Claims()
    claims.add(first, 1, 3)  # queue positions 1..3
    claims.add(second, 4, 6)
    # A batch lost at position 5 holds a row of the second file only.
    assert claims.settled(3, [(5, 5)]) == [(first, True)]
    assert claims.rest([(5, 5)]) == [(second, False)]
    claims.add(first, 7, 9)
    assert claims.settled(9, [(5, 5), (10, 12)]) == [(first, True)]  # others' losses
