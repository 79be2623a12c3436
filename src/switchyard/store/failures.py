"""Telling failures apart, and reporting what could not be stored.

Transient failures (database unreachable, locked, too slow, a broken connection) are
retried; anything else means the database refuses a row. Drops are counted in
``switchyard_store_dropped`` at once and logged in summaries, so that a flood of
them cannot flood the log while none goes unreported.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from switchyard.metrics import STORE_DROPPED

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 1.0


# PostgreSQL's codes for a database that takes no writes now but may soon: a
# read-only transaction (a hot standby, a primary demoted by a failover).
_TRANSIENT_STATES = frozenset({"25006"})


def is_transient(err: BaseException) -> bool:
    """Worth retrying: the database is unreachable, locked, slow, read-only for now, or
    a connection broke."""
    transient = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
    if isinstance(err, transient):
        return True
    if not isinstance(err, sa.exc.DBAPIError):
        return False
    return err.connection_invalidated or getattr(err.orig, "sqlstate", None) in _TRANSIENT_STATES


class DropLog:
    """Counts each drop at once; logs them at most once a second, with the total."""

    def __init__(self) -> None:
        self.total = 0
        self._unlogged = 0
        self._reasons: set[str] = set()
        self._last = 0.0

    def note(self, count: int, reason: str) -> None:
        STORE_DROPPED.inc(count)
        self.total += count
        self._unlogged += count
        self._reasons.add(reason)
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        if not self._unlogged or (
            not force and time.monotonic() - self._last < DROP_LOG_INTERVAL_S
        ):
            return
        log.error(
            "inference store: %d completions not stored (%s); %d since start",
            self._unlogged,
            ", ".join(sorted(self._reasons)),
            self.total,
        )
        self._unlogged = 0
        self._reasons.clear()
        self._last = time.monotonic()


def short_error(err: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's statement dump."""
    text = str(getattr(err, "orig", None) or err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__
