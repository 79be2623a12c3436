"""The store's SQL, as blocking functions: the writer and readers call them in threads.

Listings are keyset-paginated on ``(created_us, seq)``: the ``after`` id is looked up
once (unique index), then one index range scan returns ``limit + 1`` rows; the extra
row only tells whether there is more. Inserts ignore an id already present, so a batch
retried after a commit whose acknowledgement was lost is not written twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal

import sqlalchemy as sa

from switchyard.ids import id_millis
from switchyard.store.engine import Database
from switchyard.store.schema import chat_completions as table

Order = Literal["asc", "desc"]


class UnknownCursorError(LookupError):
    """The ``after`` id names no stored object."""


@dataclass(slots=True, frozen=True)
class ListQuery:
    after: str | None = None
    limit: int = 20
    order: Order = "desc"
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# Inserts go to the driver as plain SQL and tuples, JSON already serialised: the
# writer shares the GIL with the event loop, and SQLAlchemy's per-row bind processing
# was most of its Python time (bench/NOTES.md, section 4). And one multi-row INSERT
# per batch rather than executemany: the driver releases and retakes the GIL around
# every statement it steps, and under load each retake waited behind the event loop,
# so executemany wrote ~2,200 rows/s against ~3,500 requests/s (section 6).
COLUMNS = (
    "id",
    "created_us",
    "finished_us",
    "model",
    "provider_id",
    "provider_completion_id",
    "caller",
    "streamed",
    "completion",
    "input_messages",
    "request",
    "metadata",
)
JSON_COLUMNS = frozenset({"completion", "input_messages", "request", "metadata"})
_PLACEHOLDERS = {"sqlite": ("?", "?"), "postgresql": ("%s", "CAST(%s AS JSON)")}
# Rows per statement: powers of two, so that a batch of any size takes a few
# statements of at most seven shapes (each kept prepared by the driver). 64 rows of 12
# parameters stay under 999, the bound-parameter limit of SQLite before 3.32 (still
# the build on some long-term distributions); PostgreSQL allows 65,535.
STATEMENT_SIZES = (64, 32, 16, 8, 4, 2, 1)


@functools.cache
def _insert_sql(backend: str, rows: int) -> str:
    placeholder, json_placeholder = _PLACEHOLDERS[backend]
    one = ", ".join(json_placeholder if c in JSON_COLUMNS else placeholder for c in COLUMNS)
    values = ", ".join([f"({one})"] * rows)
    return (
        f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT (id) DO NOTHING"
    )


Values = tuple[Any, ...]


def _parts(rows: list[Values]) -> Iterator[list[Values]]:
    start = 0
    for size in STATEMENT_SIZES:
        while len(rows) - start >= size:
            yield rows[start : start + size]
            start += size


def insert_rows(db: Database, rows: list[Values]) -> None:
    """One transaction on the writer's connection; on failure that connection is dropped."""
    backend = db.url.get_backend_name()
    with db.writer_transaction() as cursor:
        for part in _parts(rows):
            # Flattened in C: a generator expression here cost ~4.5k instructions a row
            # (bench/NOTES.md, section 62).
            cursor.execute(_insert_sql(backend, len(part)), tuple(chain.from_iterable(part)))


def list_rows(db: Database, query: ListQuery) -> tuple[list[sa.Row[Any]], bool]:
    """One page of rows, and whether more follow."""
    statement = sa.select(table)
    if query.model is not None:
        statement = statement.where(table.c.model == query.model)
    backend = db.url.get_backend_name()
    for key, value in query.metadata.items():
        statement = statement.where(_metadata_is(backend, key, value))
    position = sa.tuple_(table.c.created_us, table.c.seq)
    with db.reads.connect() as connection:
        if query.after is not None:
            cursor = connection.execute(
                sa.select(table.c.created_us, table.c.seq).where(table.c.id == query.after)
            ).one_or_none()
            if cursor is not None:
                bound = sa.tuple_(*cursor)
                statement = statement.where(
                    position > bound if query.order == "asc" else position < bound
                )
            else:
                statement = statement.where(_after_deleted(query.after, query.order))
        columns = (table.c.created_us, table.c.seq)
        ordering = [c.asc() if query.order == "asc" else c.desc() for c in columns]
        rows = connection.execute(statement.order_by(*ordering).limit(query.limit + 1)).all()
    return list(rows[: query.limit]), len(rows) > query.limit


def _metadata_is(backend: str, key: str, value: str) -> sa.ColumnElement[bool]:
    if backend == "sqlite" and _unquotable(key):
        # SQLite's JSON paths cannot quote these characters (the path finds nothing):
        # such a key is looked up among the object's members instead.
        members = sa.func.json_each(table.c.metadata).table_valued("key", "value")
        found = sa.select(1).select_from(members)
        return found.where(members.c.key == key, members.c.value == value).exists()
    matches: sa.ColumnElement[bool] = table.c.metadata[key].as_string() == value
    return matches


def _unquotable(key: str) -> bool:
    """Whether SQLite's JSON path misses ``key``: it compares a path label with the
    key's escaped JSON text, so a quote, a backslash or a control character (escaped
    in JSON as \\t, \\u0001...) never matches."""
    return '"' in key or "\\" in key or any(c < " " for c in key)


def _after_deleted(after: str, order: Order) -> sa.ColumnElement[bool]:
    """Where a page after a row no longer there begins: from the millisecond in its id
    (ours carry the time their row is listed by, ``ids.py``). A client deleting each
    completion as it pages through them (the SDK's auto-pagination) asks for the page
    after one it just deleted. The bounds take a millisecond more on either side (the
    row's time is a float of the same clock read), so a row of those milliseconds may
    come again; none is skipped. An id of ours that never named a row pages the same."""
    created_ms = id_millis(after)
    if created_ms is None:
        raise UnknownCursorError(after)
    if order == "asc":
        return table.c.created_us >= (created_ms - 1) * 1000
    return table.c.created_us < (created_ms + 2) * 1000


def get_row(db: Database, completion_id: str) -> sa.Row[Any] | None:
    with db.reads.connect() as connection:
        return connection.execute(sa.select(table).where(table.c.id == completion_id)).one_or_none()


def get_input_messages(db: Database, completion_id: str) -> list[Any] | None:
    with db.reads.connect() as connection:
        messages = connection.execute(
            sa.select(table.c.input_messages).where(table.c.id == completion_id)
        ).one_or_none()
    return None if messages is None else list(messages[0])


def update_metadata(
    db: Database, completion_id: str, metadata: dict[str, str] | None
) -> sa.Row[Any] | None:
    # An UPDATE, then a SELECT in its transaction, not UPDATE ... RETURNING: SQLite has
    # RETURNING only from 3.35, and the builds of some long-term distributions are older.
    statement = sa.update(table).where(table.c.id == completion_id).values(metadata=metadata)
    with db.writes.begin() as connection:
        if connection.execute(statement).rowcount == 0:
            return None
        return connection.execute(sa.select(table).where(table.c.id == completion_id)).one()


def delete_row(db: Database, completion_id: str) -> bool:
    with db.writes.begin() as connection:
        result = connection.execute(sa.delete(table).where(table.c.id == completion_id))
    return result.rowcount > 0


def count_rows(db: Database) -> int:
    with db.reads.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
