"""Database URLs and engines for SQLite and PostgreSQL.

SQLite: WAL (readers never wait for the writer), a long ``busy_timeout``, and writes
that start with ``BEGIN IMMEDIATE``: a write transaction takes the write lock up front,
so two workers wait their turn instead of failing with "database is locked" when a
read lock cannot be upgraded. Python's sqlite3 (3.11) hides BEGIN for SELECT and DDL,
so transactions are driven from SQLAlchemy's events instead (its documented recipe).
Reads get their own engine with plain deferred BEGIN.

PostgreSQL: ``postgresql://`` URLs use psycopg 3. Connect, statement and TCP timeouts
are short, so that a database that is down or unreachable fails a write within
seconds (and it is retried) rather than holding the writer thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from switchyard.config import Config
from switchyard.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
PG_STATEMENT_TIMEOUT_MS = 30_000
PG_TCP_USER_TIMEOUT_MS = 20_000
DEFAULT_FILE = "switchyard.db"
WRITE_BEGIN = "BEGIN IMMEDIATE"  # SQLite: writes take the write lock up front


def store_url(config: Config) -> URL:
    """The SQLAlchemy URL for ``store.url``: SQLite in the data directory by default."""
    raw = config.store.url or f"sqlite:///{config.resolved_data_dir() / DEFAULT_FILE}"
    try:
        url = make_url(raw)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"store.url {raw!r} is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/database"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(
            f"store.url uses {url.drivername!r}; the store supports sqlite:/// and "
            "postgresql:// (psycopg 3)"
        )
    if url.drivername.startswith("sqlite") and not url.database:
        raise ConfigError("store.url: SQLite needs a file path (sqlite:///path/to/file.db)")
    if url.drivername.startswith("sqlite") and ":memory:" in (url.database or ""):
        # Each connection (the writer process's, the readers') would have a database
        # of its own, and every row would be gone at exit.
        raise ConfigError(
            "store.url: an in-memory SQLite database cannot be shared by the store's "
            "writer and readers; use a file path (sqlite:///path/to/file.db), or "
            "store.enabled: false to keep nothing"
        )
    return url


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(slots=True)
class Database:
    """One store database: ``writes`` and ``reads`` are the same engine on PostgreSQL."""

    url: URL
    writes: sa.Engine
    reads: sa.Engine
    _writer: sa.Connection | None = None

    def writer_connection(self) -> sa.Connection:
        """The writer's own connection, kept open between batches. Checking one out of
        the pool per batch (a reset on return, and on PostgreSQL a pre-ping round trip)
        cost more than a small batch's insert: 316 -> 115 us for a one-row batch on
        SQLite (bench/NOTES.md). Used from the single writer thread only."""
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.writes.connect()
        return self._writer

    @contextlib.contextmanager
    def writer_transaction(self) -> Iterator[Any]:
        """A cursor of the writer's connection, in one transaction committed on exit.

        The driver's own (sqlite3, psycopg) cursor and commit: SQLAlchemy's begin,
        execute and commit around them cost as much as a one-row insert itself (a
        one-row batch on SQLite: 66 us through them, 44 us this way; bench/NOTES.md,
        section 23). A driver error
        comes out wrapped as SQLAlchemy would wrap it (``OperationalError`` and so on),
        so that it is told apart as from any other query, and the connection is dropped:
        the next batch starts on a fresh one."""
        dbapi_connection = self.writer_connection().connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi = self.writes.dialect.loaded_dbapi
        cursor = None
        try:
            cursor = dbapi_connection.cursor()
            if self.is_sqlite:
                # The connection is in autocommit mode (engine events below): the write
                # lock is taken up front, as SQLAlchemy's begin event does for other writes.
                cursor.execute(WRITE_BEGIN)
            yield cursor
            dbapi_connection.commit()
        except dbapi.Error as err:
            disconnected = self.writes.dialect.is_disconnect(err, dbapi_connection, cursor)
            self._abandon(dbapi_connection, rollback=not disconnected)
            raise sa.exc.DBAPIError.instance(
                None,
                None,
                err,
                dbapi.Error,
                connection_invalidated=disconnected,
                dialect=self.writes.dialect,
            ) from err
        except BaseException:
            # Not the database's (a value the driver cannot bind, say): no transaction
            # may stay open on the kept connection, holding SQLite's write lock.
            self._abandon(dbapi_connection, rollback=True)
            raise
        finally:
            if cursor is not None:
                with contextlib.suppress(dbapi.Error):
                    cursor.close()

    def _abandon(self, dbapi_connection: Any, rollback: bool) -> None:
        if rollback:
            with contextlib.suppress(self.writes.dialect.loaded_dbapi.Error):
                dbapi_connection.rollback()
        self.drop_writer_connection()

    def drop_writer_connection(self) -> None:
        """After a failed write: the next batch starts on a fresh connection."""
        if self._writer is not None:
            self._writer.invalidate()
            self._writer = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.database or "")

    def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.writes.dispose()
        if self.reads is not self.writes:
            self.reads.dispose()


def _pg_options(url: URL) -> str:
    """The server options of a connection: the store's statement timeout, then the
    operator's (``?options=`` in the URL, or ``PGOPTIONS``, which libpq reads only when
    no options are given), which win where both set one. Passing ours alone would drop
    theirs (a ``search_path``)."""
    given = url.query.get("options") or os.environ.get("PGOPTIONS") or ""
    theirs = given if isinstance(given, str) else " ".join(given)
    return f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} {theirs}".strip()


def open_database(url: URL, *, sync_commits: bool = False) -> Database:
    """Engines for ``url`` (no connection is made yet). ``sync_commits``: on SQLite,
    fsync every commit (``synchronous=FULL``) instead of at checkpoints."""
    if url.get_backend_name() == "sqlite":
        folder = Path(url.database or "").parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot create the store's folder {folder}: {err.strerror}"
            ) from None
        writes = _sqlite_engine(url, WRITE_BEGIN, sync_commits, pool_size=2)
        reads = _sqlite_engine(url, "BEGIN", sync_commits, pool_size=4)
        return Database(url, writes, reads)
    engine = sa.create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=10,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "options": _pg_options(url),
            "application_name": "switchyard-store",
            # A network that drops packets (rather than refusing) must fail a call
            # within seconds, not after TCP's default of many minutes.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        },
    )
    return Database(url, engine, engine)


def _bind_cheaply() -> None:
    """Adapters for bool and None that bind them as sqlite3 would anyway (1 and 0,
    NULL). Without one, sqlite3 (3.11) looks for a conversion for any value that is
    not exactly an int, float, str or bytes, and each look-up raises and clears an
    AttributeError inside the driver: 3.9k instructions of a chat row's 43k insert
    (``streamed``, and ``caller`` without keys; bench/NOTES.md, section 55).
    ``{}.get`` is a C function that returns its argument's lookup, None for None:
    no Python frame per value. An adapter that the application registered first is
    kept: what it stores is its choice, and ours would change it process-wide."""
    nothing: dict[None, None] = {}
    if (bool, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(bool, int)
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), nothing.get)


def _sqlite_engine(url: URL, begin: str, sync_commits: bool, pool_size: int) -> sa.Engine:
    _bind_cheaply()
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    synchronous = "FULL" if sync_commits else "NORMAL"

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        # None: the driver sends no BEGIN of its own; _begin below sends ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        if begin == WRITE_BEGIN:
            # A multi-row INSERT keeps a statement journal (to undo its rows if one
            # fails); in a file, that was an open, write, close and unlink of a temporary
            # file for every statement the writer ran (bench/NOTES.md, section 23).
            cursor.execute("PRAGMA temp_store = MEMORY")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine
