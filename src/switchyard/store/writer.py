"""The write path: a bounded queue, drained in batches by one thread, retried until written.

A handler only puts its call on the queue (``submit``); one task takes batches off
it and inserts each in the writer thread, so the event loop never waits for the
database. A batch that fails for a transient reason (database down, locked, slow) is
kept and retried with backoff while the queue absorbs new calls; a row the database
refuses outright is isolated so that only that row is lost, and it is counted and
logged. A full queue drops the new call, counted and logged. ``close`` drains the
queue; past ``close_timeout`` with the database still down, what is left is counted
as dropped and logged rather than holding the process forever.

``settled`` counts calls that reached the database or were given up, in queue
order, so ``wait_settled(position)`` serves sync durability and read-your-writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

from switchyard.config import StoreConfig
from switchyard.metrics import STORE_FAILED_WRITES, STORE_UNWRITTEN, STORE_WRITTEN
from switchyard.sink import StoredCall
from switchyard.store.engine import Database
from switchyard.store.failures import DropLog, is_transient, short_error
from switchyard.store.migrate import migrate
from switchyard.store.queries import Values, insert_rows, row_values
from switchyard.store.rows import row_for

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
Rows = list[Values]


class Writer:
    """One per worker process; every method runs on the worker's event loop."""

    def __init__(self, db: Database, config: StoreConfig) -> None:
        self._db = db
        self._config = config
        self._queue: asyncio.Queue[Values | None] = asyncio.Queue(config.queue_size)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="switchyard-store-writer")
        self._progress = asyncio.Condition()
        self._drops = DropLog()
        self._task: asyncio.Task[None] | None = None
        self._deadline: float | None = None  # set by close(): stop retrying after it
        self.accepted = 0
        self.settled = 0
        self.ready = False

    async def start(self) -> None:
        """Migrate now if the database answers; else keep trying in the background."""
        try:
            await self._in_thread(migrate, self._db)
            self.ready = True
        except sa.exc.SQLAlchemyError as err:
            log.error("inference store unavailable at start, retrying: %s", short_error(err))
        self._task = asyncio.create_task(self._run(), name="switchyard-store-writer")

    def submit(self, call: StoredCall) -> int | None:
        """Queue ``call``: its position for :meth:`wait_settled`, None if dropped."""
        values = self._values(call)
        if values is None:
            return None
        try:
            self._queue.put_nowait(values)
        except asyncio.QueueFull:
            self._drops.note(1, "queue full")
            return None
        return self._accepted_one()

    def submit_soon(self, call: StoredCall) -> None:
        """:meth:`submit` once this event-loop iteration is done, so that the response
        that carries ``call`` is written first and the client does not wait for the
        conversion. Still before any new request is read: reads see the row."""
        asyncio.get_running_loop().call_soon(self.submit, call)

    async def submit_waiting(self, call: StoredCall) -> int | None:
        """Like :meth:`submit`, but wait for room in the queue (bound it with a timeout)."""
        values = self._values(call)
        if values is None:
            return None
        await self._queue.put(values)
        return self._accepted_one()

    def _values(self, call: StoredCall) -> Values | None:
        # Here, on the event loop, rather than in the writer thread: a queued call full
        # of dicts and lists survives into the collector's oldest generation and is
        # traversed again at every collection; its serialised row is not (and the
        # thread would take the GIL for the same work anyway; bench/NOTES.md, section 7).
        try:
            return row_values(row_for(call))
        except Exception:  # malformed provider output must cost one row, not the request
            log.exception("inference store: cannot convert a completion of %s", call.provider_id)
            self._drops.note(1, "malformed completion")
            return None

    def note_dropped(self, count: int, reason: str) -> None:
        self._drops.note(count, reason)

    def _accepted_one(self) -> int:
        self.accepted += 1
        STORE_UNWRITTEN.inc()
        return self.accepted

    async def wait_settled(self, position: int) -> None:
        """Wait until every call up to ``position`` is written or given up."""
        if self.settled >= position:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self.settled >= position)

    async def wait_all_settled(self) -> None:
        """Wait until every call handed over so far, by any ``submit``, is settled."""
        await asyncio.sleep(0)  # let calls handed over with submit_soon be counted
        await self.wait_settled(self.accepted)

    async def close(self) -> None:
        await asyncio.sleep(0)  # calls handed over with submit_soon join the queue first
        if self._task is None:
            return
        self._deadline = time.monotonic() + self._config.close_timeout
        try:
            # Bounded even if a database call hangs in the thread despite its timeouts.
            await asyncio.wait_for(self._finish(), self._config.close_timeout + 30)
        except TimeoutError:
            self._task.cancel()
            STORE_UNWRITTEN.dec(self.accepted - self.settled)
            self._drops.note(self.accepted - self.settled, "shutdown timed out")
        self._drops.flush()
        self._thread.shutdown(wait=False)

    async def _finish(self) -> None:
        assert self._task is not None
        await self._queue.put(None)
        await self._task

    # -- the writer task --------------------------------------------------------

    async def _run(self) -> None:
        await self._ensure_schema()
        done = False
        while not done:
            batch, done = await self._next_batch()
            try:
                await self._write(batch)
            except Exception:  # a bug must cost this batch, never the writer
                log.exception("inference store writer failed on a batch")
                self._drops.note(len(batch), "writer error")
            await self._settle(len(batch))
            self._drops.flush(force=False)

    async def _ensure_schema(self) -> None:
        delay = RETRY_FIRST_S
        while not self.ready and not self._past_deadline():
            await self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S * 6)
            try:
                await self._in_thread(migrate, self._db)
            except sa.exc.SQLAlchemyError as err:
                log.error("inference store still unavailable: %s", short_error(err))
            except Exception:  # e.g. a schema newer than this version: say so, keep serving
                log.exception("inference store cannot migrate its database")
            else:
                self.ready = True
                log.info("inference store reachable again; schema ready")

    async def _next_batch(self) -> tuple[Rows, bool]:
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        size = self._config.batch_size
        if self._lingers() and self._queue.qsize() < size - 1:
            await asyncio.sleep(self._config.flush_interval)
        while len(batch) < size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _lingers(self) -> bool:
        # Async durability trades a few ms for bigger batches; sync callers are waiting.
        cfg = self._config
        return cfg.durability == "async" and cfg.flush_interval > 0 and self._deadline is None

    async def _write(self, rows: Rows) -> None:
        delay = RETRY_FIRST_S
        while rows:
            if self._past_deadline():
                self._drops.note(len(rows), "database unavailable at shutdown")
                return
            try:
                await self._in_thread(insert_rows, self._db, rows)
            except sa.exc.SQLAlchemyError as err:
                STORE_FAILED_WRITES.inc()
                if not is_transient(err):
                    rows = await self._isolate(rows)
                    continue
                log.warning(
                    "inference store: writing %d completions failed, retry in %.1fs: %s",
                    len(rows),
                    delay,
                    short_error(err),
                )
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            STORE_WRITTEN.inc(len(rows))
            return

    async def _isolate(self, rows: Rows) -> Rows:
        """Write rows one by one after the database refused the batch: only the rows it
        refuses are lost (counted, logged). Returns the rest if it becomes unreachable."""
        for position, row in enumerate(rows):
            try:
                await self._in_thread(insert_rows, self._db, [row])
            except sa.exc.SQLAlchemyError as err:
                if is_transient(err):
                    return rows[position:]
                log.error("inference store refused completion %s: %s", row[0], short_error(err))
                self._drops.note(1, "refused by the database")
                continue
            STORE_WRITTEN.inc()
        return []

    async def _settle(self, count: int) -> None:
        STORE_UNWRITTEN.dec(count)
        async with self._progress:
            self.settled += count
            self._progress.notify_all()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _sleep(self, delay: float) -> None:
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - time.monotonic()))
        await asyncio.sleep(delay)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
