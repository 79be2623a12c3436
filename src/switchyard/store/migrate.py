"""Run the store's migrations at start, safely when several workers start at once.

Migrations are alembic scripts in ``migrations/versions``, applied in order and
recorded in the ``switchyard_migrations`` table. Every worker calls :func:`migrate`;
a lock makes them take turns, and the ones that come second find nothing to do.
PostgreSQL: a transaction-scoped advisory lock, released by the commit. SQLite: an
exclusive ``flock`` on a file beside the database, which also covers switching the
file to WAL (that needs exclusive access and does not wait for a busy database).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchyard.store.engine import Database

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "switchyard_migrations"
# Any fixed 64-bit number, shared by every Switchyard process on the database.
PG_LOCK_KEY = 0x5357_4954_4348_5944


def alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def migrate(db: Database) -> None:
    """Bring the schema to the newest revision (blocking: call it from a thread)."""
    if db.is_sqlite:
        with _file_lock(db.sqlite_path.with_name(db.sqlite_path.name + ".migrate-lock")):
            _enable_wal(db.writes)
            with db.writes.begin() as connection:
                _upgrade(connection)
        return
    with db.writes.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        _upgrade(connection)


def _upgrade(connection: sa.Connection) -> None:
    before = current_revision(connection)
    head = head_revision()
    if before == head:
        return
    command.upgrade(alembic_config(connection), "head")
    log.info("store schema migrated from %s to %s", before or "empty", head)


def _enable_wal(engine: sa.Engine) -> None:
    # Persistent in the file: set once here, every later connection opens in WAL.
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        mode = raw.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            log.warning("SQLite store could not switch to WAL (journal_mode=%s)", mode)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
