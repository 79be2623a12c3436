"""The write path: a bounded queue, drained in batches, retried until written.

A handler only appends its call to the queue (``put``), as a record of the bytes
it already has; one task takes batches off it and hands each to the backend (a writer
process by default, see ``backends``), which parses and inserts it, so the event loop
neither waits for the database nor spends its CPU on the store. A batch that fails
for a transient reason (database down, locked, slow, the writer process gone) is kept
and retried with backoff while the queue absorbs new calls; a row the database
refuses outright is isolated so that only that row is lost, and it is counted and
logged. A full queue drops the new call, counted and logged. ``close`` drains the
queue; past ``close_timeout`` with the database still down, what is left is saved to
a file (``spill``) that the next start writes, rather than holding the process forever.

``settled`` counts calls that reached the database, were saved to a file at shutdown
or were given up (refused, dropped), in queue order, so ``wait_settled(position)``
serves sync durability and read-your-writes.

``put`` runs once per chat completion at full request rate, so it does as little as
it can: one append, a few integers. The queue is a deque, not an
``asyncio.Queue`` (whose put and get are a dozen Python calls), the writer task is
woken only when it sleeps, and the unwritten gauge is computed when scraped
(bench/NOTES.md, section 16).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from pathlib import Path

import sqlalchemy as sa

from switchyard.config import StoreConfig
from switchyard.metrics import STORE_FAILED_WRITES, STORE_UNWRITTEN, STORE_WRITTEN, live_gauge
from switchyard.sink import StoredCall
from switchyard.store import spill
from switchyard.store.backends import Backend, ProcessBackend, ThreadBackend
from switchyard.store.batch import WriteFailed
from switchyard.store.engine import Database
from switchyard.store.failures import DropLog, short_error
from switchyard.store.migrate import migrate
from switchyard.store.record import Record, record_id, record_of

log = logging.getLogger(__name__)

# What the queue may hold in bytes, besides its count: a stream's record holds all its
# chunks (~200 bytes per token), so while the database is down 10,000 long streams
# would otherwise hold gigabytes.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
Records = list[Record]

# Every open writer of this process, for the gauge of rows not written yet.
_OPEN: weakref.WeakSet[Writer] = weakref.WeakSet()


def backend_for(db: Database, config: StoreConfig) -> Backend:
    if config.writer == "thread":
        return ThreadBackend(db)
    return ProcessBackend(db, sync_commits=config.durability == "sync")


class Writer:
    """One per worker process; every method runs on the worker's event loop."""

    def __init__(self, db: Database, config: StoreConfig, spill_dir: Path | None = None) -> None:
        self._db = db
        self._config = config
        self._queue_size = config.queue_size
        # A linger ends at a full batch, or before the queue could fill (a batch larger
        # than the queue) or hold half its bytes: it must never cost a dropped row.
        self._batch_size = min(config.batch_size, config.queue_size)
        self._spill_dir = spill_dir  # where what shutdown could not write is saved
        self._more_saved = spill_dir is not None  # files there may wait to be claimed
        self._claims = spill.Claims()
        # Queue positions (first, last) of rows neither written nor saved (a failed save, a
        # writer error): a claimed file holding one of them is kept, to be claimed again.
        self._lost: list[tuple[int, int]] = []
        self._in_flight: Records = []
        self._queue: deque[Record] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the writer task, asleep
        self._lingering: asyncio.Future[None] | None = None  # the writer task, filling a batch
        self._callers_waiting = 0  # in wait_settled
        self._room = asyncio.Event()  # set when a batch leaves the queue
        self._closing = False
        self._closed = False
        self._backend = backend_for(db, config)
        self._progress = asyncio.Condition()
        self._drops = DropLog()
        self._task: asyncio.Task[None] | None = None
        self._deadline: float | None = None  # set by close(): stop retrying after it
        self._deadline_set = asyncio.Event()  # wakes a retry's sleep begun before it
        self._queued_bytes = 0
        self.accepted = 0
        self.settled = 0
        self.ready = False
        _OPEN.add(self)

    async def start(self) -> None:
        """Migrate now if the database answers; else keep trying in the background."""
        try:
            await asyncio.to_thread(migrate, self._db)
            self.ready = True
        except sa.exc.SQLAlchemyError as err:
            log.error("inference store unavailable at start, retrying: %s", short_error(err))
        except Exception as err:  # a schema newer than this version, an unlockable folder:
            # said, and retried as a database that is down, while the API serves.
            log.error("inference store cannot migrate its database at start, retrying: %r", err)
        self._backend.start()
        self._task = asyncio.create_task(self._run(), name="switchyard-store-writer")

    def put(self, record: Record) -> None:
        """Queue ``record``, or count it as dropped (queue full, store closed).

        Runs once per completion on the request's path, so it is one frame that does
        everything inline: at saturation the old way there (a StoredCall, a coroutine,
        a conversion and four calls) cost the worker 6-10 us more per request than
        this, though a tight loop timed it at 1.5 us (bench/NOTES.md, section 23)."""
        size = len(record[0]) + len(record[1])
        if (
            self._closed
            or len(self._queue) >= self._queue_size
            or self._queued_bytes + size > MAX_QUEUED_BYTES
        ):
            self._drops.note(1, "store closed" if self._closed else "queue full")
            return
        self._queue.append(record)
        self._queued_bytes += size
        self.accepted += 1
        if self._waiter is not None:
            self._wake_writer()
        elif self._lingering is not None and self._fills():
            self._hurry()  # a batch is full: lingering on would only grow the queue

    async def put_waiting(self, record: Record) -> int | None:
        """Queue ``record`` once the queue has room (bound it with a timeout): its
        position for :meth:`wait_settled`, None if the store is closed."""
        if self._closed:
            self._drops.note(1, "store closed")
            return None
        while len(self._queue) >= self._queue_size:
            self._room.clear()
            await self._room.wait()
        return self._append(record, _size(record))

    def _append(self, record: Record, size: int) -> int:
        self._queue.append(record)
        self._queued_bytes += size
        self.accepted += 1
        if self._waiter is not None:
            self._wake_writer()
        elif self._lingering is not None and self._fills():
            self._hurry()
        return self.accepted

    def _wake_writer(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _done(waiter)

    def to_record(self, call: StoredCall) -> Record | None:
        """The record of a call in parsed forms; None (counted as dropped) if it has none."""
        try:
            return record_of(call)
        except TypeError:  # parsed fields that are not JSON (a bug upstream of the store)
            log.exception("inference store: cannot serialise a completion of %s", call.provider_id)
            self._drops.note(1, "malformed completion")
            return None

    def note_dropped(self, count: int, reason: str) -> None:
        self._drops.note(count, reason)

    async def wait_settled(self, position: int) -> None:
        """Wait until every call up to ``position`` is written or given up."""
        if self.settled >= position:
            return
        # Someone waits for the rows (a read of this worker's own writes): a fuller
        # batch is not worth their wait, so the writer lingers no more until they have it.
        self._callers_waiting += 1
        self._hurry()
        try:
            async with self._progress:
                await self._progress.wait_for(lambda: self.settled >= position)
        finally:
            self._callers_waiting -= 1

    async def wait_all_settled(self) -> None:
        """Wait until every call handed over so far, by ``put`` or ``put_waiting``, is settled."""
        await self.wait_settled(self.accepted)

    async def close(self) -> None:
        if self._task is None:
            return
        self._deadline = time.monotonic() + self._config.close_timeout
        self._deadline_set.set()
        try:
            # Bounded even if a database call hangs in the thread despite its timeouts.
            await asyncio.wait_for(self._finish(), self._config.close_timeout + 30)
        except TimeoutError:  # a database call hangs despite its timeouts
            self._task.cancel()
            self._closed = True
            self._save([*self._in_flight, *self._queue], "shutdown timed out")
        # What a claimed file held is now written or saved again, unless some was lost.
        for claim, delete in self._claims.rest(self._lost):
            claim.release(delete)
        _OPEN.discard(self)
        self._drops.flush()
        await self._backend.close()

    async def _finish(self) -> None:
        assert self._task is not None
        self._closing = True
        self._wake_writer()
        self._hurry()
        await self._task

    # -- the writer task --------------------------------------------------------

    async def _run(self) -> None:
        await self._ensure_schema()
        while (batch := await self._next_batch()) is not None:
            self._in_flight = batch
            try:
                await self._write(batch)
            except Exception:  # a bug must cost this batch, never the writer
                log.exception("inference store writer failed on a batch")
                self._drops.note(len(batch), "writer error")
                self._lost.append((self.settled + 1, self.settled + len(batch)))
            self._queued_bytes -= sum(map(_size, batch))
            self._in_flight = []
            await self._settle(len(batch))
            await self._release_settled()
            self._drops.flush(force=False)

    async def _take_saved(self) -> None:
        """Queue the completions of one file an earlier shutdown saved. One at a time,
        when the queue is empty: a backlog on disk never floods the memory."""
        assert self._spill_dir is not None
        try:
            claim = await asyncio.to_thread(spill.claim_one, self._spill_dir)
        except OSError as err:
            log.error("inference store: cannot read %s: %s", self._spill_dir, err)
            claim = None
        if claim is None:
            self._more_saved = False
            return
        first = self.accepted + 1
        for record in claim.records:
            self._append(record, _size(record))
        self._claims.add(claim, first, self.accepted)
        log.warning(
            "inference store: %d completions saved at an earlier shutdown (%s) queued again",
            len(claim.records),
            claim.path,
        )
        await self._release_settled()  # a file with no completion left

    async def _release_settled(self) -> None:
        for claim, delete in self._claims.settled(self.settled, self._lost):
            if not delete:
                log.error("inference store: keeping %s: not all of it was written", claim.path)
            await asyncio.to_thread(claim.release, delete)

    async def _ensure_schema(self) -> None:
        delay = RETRY_FIRST_S
        told = False  # a failure that is not the database's was logged with its traceback
        while not self.ready and not self._past_deadline():
            await self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            try:
                await asyncio.to_thread(migrate, self._db)
            except sa.exc.SQLAlchemyError as err:
                log.error("inference store still unavailable: %s", short_error(err))
            except Exception as err:  # e.g. a schema newer than this version: keep serving
                # The traceback once, then a line per retry: it retries every few seconds.
                log.error("inference store cannot migrate its database: %r", err, exc_info=not told)
                told = True
            else:
                self.ready = True
                log.info("inference store reachable again; schema ready")

    async def _next_batch(self) -> Records | None:
        """The next batch; None once closing with nothing left to write."""
        queue = self._queue
        while not queue:
            if self._closing:
                self._closed = True
                return None
            if self._more_saved:
                await self._take_saved()
                continue
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        # Past the close deadline, what is left goes to one file, not one per batch.
        size = len(queue) if self._past_deadline() else self._config.batch_size
        if self._lingers() and not self._fills():
            await self._linger()
        batch = [queue.popleft() for _ in range(min(size, len(queue)))]
        self._room.set()
        return batch

    async def _linger(self) -> None:
        """Wait up to ``flush_interval`` for a fuller batch. A batch costs the writer
        process a fixed ~0.8 ms of CPU at moderate rates (a wake-up, a transaction, the
        reply), which a batch per request paid in full at 20 requests/s, on the cores the
        requests use (bench/NOTES.md, section 65). It ends early when the batch is full,
        when a read waits for this worker's rows (wait_settled), and at close()."""
        loop = asyncio.get_running_loop()
        self._lingering = lingering = loop.create_future()
        timer = loop.call_later(self._config.flush_interval, _done, lingering)
        try:
            await lingering
        finally:
            timer.cancel()
            self._lingering = None

    def _fills(self) -> bool:
        return len(self._queue) >= self._batch_size or self._queued_bytes > MAX_QUEUED_BYTES // 2

    def _hurry(self) -> None:
        if self._lingering is not None:
            _done(self._lingering)

    def _lingers(self) -> bool:
        # Async durability trades a moment for bigger batches; sync callers are waiting.
        cfg = self._config
        return (
            cfg.durability == "async"
            and cfg.flush_interval > 0
            and not self._closing
            and not self._callers_waiting
        )

    async def _write(self, records: Records) -> None:
        delay = RETRY_FIRST_S
        while records:
            if self._past_deadline():
                self._save(records, "database unavailable at shutdown")
                return
            try:
                problems = await self._backend.write(records)
            except WriteFailed as err:
                STORE_FAILED_WRITES.inc()
                if not err.transient:
                    records = await self._isolate(records)
                    continue
                log.warning(
                    "inference store: writing %d completions failed, retry in %.1fs: %s",
                    len(records),
                    delay,
                    err.message,
                )
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._count_written(len(records), problems)
            return

    async def _isolate(self, records: Records) -> Records:
        """Write records one by one after the database refused the batch: only the ones
        it refuses are lost (counted, logged). Returns the rest if it becomes unreachable."""
        for position, record in enumerate(records):
            try:
                problems = await self._backend.write([record])
            except WriteFailed as err:
                if err.transient:
                    return records[position:]
                log.error(
                    "inference store refused completion %s: %s", record_id(record), err.message
                )
                self._drops.note(1, "refused by the database")
                continue
            self._count_written(1, problems)
        return []

    def _count_written(self, count: int, problems: list[str]) -> None:
        """``count`` records went to the database; those in ``problems`` were left out."""
        for problem in problems:
            log.error("inference store: %s", problem)
        if problems:
            self._drops.note(len(problems), "malformed completion")
        STORE_WRITTEN.inc(count - len(problems))

    async def _settle(self, count: int) -> None:
        async with self._progress:
            self.settled += count
            self._progress.notify_all()

    def _save(self, records: Records, why: str) -> None:
        """Keep ``records`` in a file for the next start; drop them (logged) if that fails."""
        if not records:
            return
        try:
            if self._spill_dir is None:
                raise OSError("no data directory")
            path = spill.save(self._spill_dir, records)
        except (OSError, UnicodeDecodeError) as err:
            log.error("inference store: cannot save unwritten completions: %s", err)
            self._drops.note(len(records), why)
            # Which of the unsettled rows these are is not tracked: all count as lost.
            self._lost.append((self.settled + 1, self.accepted))
            return
        log.error(
            "inference store: %s; %d completions saved to %s, written at the next start",
            why,
            len(records),
            path,
        )

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _sleep(self, delay: float) -> None:
        """A retry's back-off, never past the close deadline: one begun before close()
        set it ends then, so the flush and the save keep to close_timeout."""
        if self._deadline is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_set.wait(), delay)
            if self._deadline is None:
                return
            delay = 0.0  # woken by close(): try once more at once
        delay = max(0.0, min(delay, self._deadline - time.monotonic()))
        await asyncio.sleep(delay)


def _unwritten() -> int:
    return sum(w.accepted - w.settled for w in _OPEN)


live_gauge(STORE_UNWRITTEN, _unwritten)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _size(record: Record) -> int:
    return len(record[0]) + len(record[1])
