"""Migrations: they build exactly schema.py, run once, and survive workers starting together."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url
from tests.store.helpers import call, make_store, sqlite_url

from switchyard.server.stream import Tap
from switchyard.sink import StoredCall
from switchyard.store.engine import open_database
from switchyard.store.migrate import (
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
)
from switchyard.store.schema import metadata


def test_the_migrations_build_exactly_the_schema_the_code_uses(store_url: str) -> None:
    db = open_database(make_url(store_url))
    try:
        migrate(db)
        with db.writes.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
            assert current_revision(connection) == head_revision()
    finally:
        db.dispose()


def test_migrating_again_changes_nothing(store_url: str) -> None:
    db = open_database(make_url(store_url))
    try:
        migrate(db)
        migrate(db)
        with db.reads.connect() as connection:
            versions = connection.execute(sa.text(f"SELECT * FROM {VERSION_TABLE}")).all()
        assert [tuple(v) for v in versions] == [(head_revision(),)]
    finally:
        db.dispose()


def test_workers_starting_together_migrate_once_without_errors(store_url: str) -> None:
    # Each thread has its own engines, like a worker process: the lock must serialise them.
    workers = 6
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def start() -> None:
        db = open_database(make_url(store_url))
        try:
            barrier.wait()
            migrate(db)
        except BaseException as err:  # collected and re-raised in the test thread
            errors.append(err)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    db = open_database(make_url(store_url))
    try:
        with db.reads.connect() as connection:
            assert current_revision(connection) == head_revision()
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_with_a_busy_timeout(tmp_path: Path) -> None:
    db = open_database(make_url(sqlite_url(tmp_path / "deep" / "store.db")))
    try:
        migrate(db)
        with db.reads.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one()) >= 10_000
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        db.dispose()
    durable = open_database(make_url(sqlite_url(tmp_path / "deep" / "store.db")), sync_commits=True)
    try:
        with durable.writes.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        durable.dispose()


async def test_a_downgrade_assembles_the_streams_stored_as_chunks(store_url: str) -> None:
    # What a release before revision 0002 reads: every completion assembled. More rows
    # than one batch of the downgrade; an empty stream (its row names its id); a stream
    # the writer assembled and a whole answer, which stay as they are.
    store = await make_store(store_url)
    body = orjson.dumps({"model": "m", "messages": [], "stream": True})
    tapped = [f"chatcmpl-tap-{n:04}" for n in range(520)]
    for n, completion_id in enumerate(tapped):
        tap = Tap()
        chunks = [
            {"id": "up", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": t}}]}
            for t in ("a", str(n))
        ]  # fmt: skip
        tap.dump(chunks, {"id": completion_id, "model": "m"})
        answer = tap.answer()
        assert answer is not None
        store.hand_over((body, answer, "fake", 1.0, 2.0, "up", True, None, completion_id, True))
    store.hand_over((body, b"[]", "fake", 1.0, 2.0, None, True, None, "chatcmpl-empty", True))
    chunk = {
        "id": "chatcmpl-old",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}}],
    }
    await store.completion_finished(StoredCall(body, "fake", 1.0, 2.0, chunks=[chunk]))
    await store.completion_finished(call(1))
    await store.writer.wait_all_settled()
    ids = [*tapped, "chatcmpl-empty", "chatcmpl-old", "chatcmpl-test-000001"]
    before = [await store.get_completion(i) for i in ids]
    await store.close()
    db = open_database(make_url(store_url))
    try:
        with db.writes.begin() as connection:
            untouched = _completions(connection)
            command.downgrade(alembic_config(connection), "0001")
            assert current_revision(connection) == "0001"
            completions = _completions(connection)
        assert [type(completions[i]) for i in ids] == [dict] * len(ids)
        assert completions[tapped[7]]["choices"][0]["message"]["content"] == "a7"
        assert completions["chatcmpl-empty"]["id"] == "chatcmpl-empty"
        for kept in ("chatcmpl-old", "chatcmpl-test-000001"):
            assert completions[kept] == untouched[kept]
        migrate(db)  # and back up: the rows read as before
    finally:
        db.dispose()
    store = await make_store(store_url)
    try:
        assert [await store.get_completion(i) for i in ids] == before
    finally:
        await store.close()


def _completions(connection: sa.Connection) -> dict[str, Any]:
    stored = connection.execute(sa.text("SELECT id, completion FROM chat_completions"))
    return {i: json.loads(c) if isinstance(c, str) else c for i, c in stored}
