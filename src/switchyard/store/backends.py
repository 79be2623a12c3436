"""Where a batch is written: a process of its own (the default) or a thread.

Both take one batch at a time from the writer task and return what
:func:`~switchyard.store.batch.write_records` returns, or raise its
:class:`~switchyard.store.batch.WriteFailed`. A writer process that dies mid-batch is
a transient failure: the writer keeps the batch and retries it, and the next call
starts a new process (inserts ignore ids already written, so nothing is doubled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from switchyard.store.batch import WriteFailed, write_records
from switchyard.store.engine import Database
from switchyard.store.frames import HEADER, frame
from switchyard.store.record import Record

log = logging.getLogger(__name__)

CHILD_EXIT_TIMEOUT_S = 10.0


class Backend(Protocol):
    async def write(self, records: list[Record]) -> list[str]: ...

    async def close(self) -> None: ...


class ThreadBackend:
    """Writes in one thread of the worker: no extra process, but the writer's Python
    work takes turns with the event loop for the GIL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="switchyard-store-writer")

    async def write(self, records: list[Record]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, write_records, self._db, records)

    async def close(self) -> None:
        self._thread.shutdown(wait=False)


class ProcessBackend:
    """Writes in ``python -m switchyard.store.child``, started at the first batch."""

    def __init__(self, db: Database, sync_commits: bool) -> None:
        self._settings = (db.url.render_as_string(hide_password=False), sync_commits)
        self._child: asyncio.subprocess.Process | None = None

    async def write(self, records: list[Record]) -> list[str]:
        request = frame(records)
        try:
            child = self._child or await self._start()
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(request)
            await child.stdin.drain()
            header = await child.stdout.readexactly(HEADER)
            reply = pickle.loads(await child.stdout.readexactly(int.from_bytes(header, "big")))
        # uvloop raises RuntimeError for a write to a pipe it has seen close.
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            code = await self._stop()
            raise WriteFailed(f"the store's writer process exited (code {code})", True) from None
        return _outcome(reply)

    async def _start(self) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchyard.store.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write(frame(self._settings))  # the URL may hold a password: not argv
        self._child = child
        return child

    async def _stop(self) -> int | None:
        child, self._child = self._child, None
        if child is None:
            return None
        if child.stdin is not None:
            child.stdin.close()
        try:
            return await asyncio.wait_for(child.wait(), CHILD_EXIT_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            return await child.wait()

    async def close(self) -> None:
        await self._stop()


def _outcome(reply: tuple[Any, ...]) -> list[str]:
    kind = reply[0]
    if kind == "ok":
        problems: list[str] = reply[1]
        return problems
    if kind == "failed":
        raise WriteFailed(reply[1], reply[2])
    raise RuntimeError(f"the store's writer process failed on a batch: {reply[1]}")
