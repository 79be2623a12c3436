"""Do the store's listing queries use their indexes at 100,000 rows? Prints plans and timings.

Fills a fresh SQLite file and a fresh PostgreSQL database (bulk insert through the
writer's own ``insert_rows``), then runs the listing queries the API runs: first page,
a page after a cursor in the middle (both orders), a model filter with and without a
cursor, and a lookup by id. The SQL explained is captured from the real calls, so the
plans are those of the code, not of a hand-written copy.

    .venv/bin/python bench/store_index.py [--rows 100000] [--postgres URL | --postgres off]

On SQLite, ``SCAN ... USING INDEX`` for the first page is an ordered index walk that
stops at the LIMIT; ``SEARCH ... USING INDEX`` is a range seek. A full scan would read
``SCAN chat_completions`` with ``USE TEMP B-TREE FOR ORDER BY``; its time is printed as
the baseline. On PostgreSQL the plan comes from EXPLAIN ANALYZE, with the rows read.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from switchyard.store import queries
from switchyard.store.engine import Database, open_database
from switchyard.store.migrate import migrate
from switchyard.store.queries import ListQuery

MODELS = [f"provider/model-{i}" for i in range(10)]
RARE_MODEL = "provider/rare"  # one row in 1,000: the planner should seek its index
BATCH = 5_000
RUNS = 200
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def make_rows(count: int) -> Iterator[dict[str, Any]]:
    # Many rows per second, as under load: ~40 share each second of created_us.
    start = 1_700_000_000_000_000
    for n in range(count):
        completion_id = f"chatcmpl-{n:012x}{secrets.token_hex(8)}"
        text = f"answer number {n} " * 8
        model = RARE_MODEL if n % 1000 == 7 else MODELS[n % len(MODELS)]
        yield {
            "id": completion_id,
            "created_us": start + n * 25_000,
            "finished_us": start + n * 25_000 + 400_000,
            "model": model,
            "provider_id": "provider",
            "provider_completion_id": "chatcmpl-upstream",
            "caller": None,
            "streamed": n % 5 == 0,
            "completion": {
                "id": completion_id,
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
            },
            "input_messages": [{"role": "user", "content": f"question number {n} " * 6}],
            "request": {"temperature": 0.2},
            "metadata": {"team": f"t{n % 4}"},
        }


def values(row: dict[str, Any]) -> queries.Values:
    """``row`` as the INSERT's parameters: JSON columns serialised, in column order."""
    return tuple(
        orjson.dumps(row[c]).decode() if c in queries.JSON_COLUMNS else row[c]
        for c in queries.COLUMNS
    )


def fill(db: Database, count: int) -> float:
    """Insert ``count`` rows in batches; rows per second."""
    started = time.perf_counter()
    batch: list[queries.Values] = []
    for row in make_rows(count):
        batch.append(values(row))
        if len(batch) == BATCH:
            queries.insert_rows(db, batch)
            batch = []
    if batch:
        queries.insert_rows(db, batch)
    return count / (time.perf_counter() - started)


def captured(db: Database, call: Callable[[], object]) -> list[tuple[str, Any]]:
    """The statements ``call`` sends, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        seen.append((statement, params))

    sa.event.listen(db.reads, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(db.reads, "before_cursor_execute", record)
    return seen


def explain(db: Database, statement: str, params: Any) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    with db.reads.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, params).all()
    return [str(row[-1]) for row in rows]


def median_ms(call: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cases(db: Database) -> list[tuple[str, Callable[[], object]]]:
    with db.reads.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM chat_completions")).scalar_one()
        middle = connection.execute(
            sa.text("SELECT id, model FROM chat_completions ORDER BY seq LIMIT 1 OFFSET :n"),
            {"n": count // 2},
        ).one()
    return [
        ("first page (desc)", lambda: queries.list_rows(db, ListQuery())),
        ("after cursor (desc)", lambda: queries.list_rows(db, ListQuery(after=middle.id))),
        (
            "after cursor (asc)",
            lambda: queries.list_rows(db, ListQuery(after=middle.id, order="asc")),
        ),
        ("model filter", lambda: queries.list_rows(db, ListQuery(model=middle.model))),
        (
            "model + after cursor",
            lambda: queries.list_rows(db, ListQuery(model=middle.model, after=middle.id)),
        ),
        ("rare model filter", lambda: queries.list_rows(db, ListQuery(model=RARE_MODEL))),
        ("get by id", lambda: queries.get_row(db, middle.id)),
    ]


def full_scan_ms(db: Database) -> float:
    """The first page without its index (ORDER BY an expression), for comparison."""
    statement = sa.text(
        "SELECT * FROM chat_completions ORDER BY created_us + 0 DESC, seq + 0 DESC LIMIT 21"
    )

    def run() -> None:
        with db.reads.connect() as connection:
            connection.execute(statement).all()

    return median_ms(run, runs=5)


def report(name: str, db: Database, rows: int) -> None:
    migrate(db)
    rate = fill(db, rows)
    if not db.is_sqlite:
        with db.writes.begin() as connection:
            connection.exec_driver_sql("ANALYZE chat_completions")
    print(f"\n## {name}: {rows:,} rows, bulk insert {rate:,.0f} rows/s (batches of {BATCH:,})\n")
    print(f"| query | median ms ({RUNS} runs) | plan |")
    print("|---|---:|---|")
    for label, call in cases(db):
        plans = [explain(db, stmt, params) for stmt, params in captured(db, call)]
        plan = " ; ".join(line.strip() for p in plans for line in p if _interesting(line))
        print(f"| {label} | {median_ms(call):.3f} | {plan} |")
    print(f"| baseline: first page by full scan + sort | {full_scan_ms(db):.3f} | (no index) |")


def _interesting(line: str) -> bool:
    skip = ("Planning", "Execution", "Buffers", "Heap Fetches")
    return not line.strip().startswith(skip)


def sqlite_db(path: Path) -> Database:
    return open_database(make_url(f"sqlite:///{path}"))


def postgres(admin: str, rows: int) -> None:
    name = f"switchyard_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url: URL = make_url(admin).set(database=name)
    db = open_database(url)
    try:
        report("PostgreSQL", db, rows)
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL, or 'off'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite_db(Path(folder) / "bench.db")
        try:
            report("SQLite", db, args.rows)
        finally:
            db.dispose()
    if args.postgres != "off":
        postgres(args.postgres, args.rows)


if __name__ == "__main__":
    main()
