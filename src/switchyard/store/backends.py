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
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from switchyard.metrics import MULTIPROCESS_DIR
from switchyard.store.batch import WriteFailed, write_records
from switchyard.store.engine import Database
from switchyard.store.frames import HEADER, READY, frame, frame_parts, parse
from switchyard.store.record import Record

log = logging.getLogger(__name__)

CHILD_MODULE = "switchyard.store.child"
CHILD_EXIT_TIMEOUT_S = 10.0
# Longer than any database timeout (engine.py: 30 s): past it the process is stuck.
REPLY_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0


class Backend(Protocol):
    def start(self) -> None: ...

    async def write(self, records: list[Record]) -> list[str]: ...

    async def close(self) -> None: ...


class StartFailed(Exception):
    """The writer process did not come up (it exited, or did not say READY in time)."""


class ThreadBackend:
    """Writes in one thread of the worker: no extra process, but the writer's Python
    work takes turns with the event loop for the GIL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="switchyard-store-writer")

    def start(self) -> None:
        """Nothing to start: the thread is made at the first batch."""

    async def write(self, records: list[Record]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, write_records, self._db, records)

    async def close(self) -> None:
        self._thread.shutdown(wait=False)


class ProcessBackend:
    """Writes in ``python -m switchyard.store.child``. A process that dies is replaced
    at the next batch; one that cannot start at all (say, an interpreter that cannot
    import Switchyard by itself) is reported once and the writes go to a thread."""

    def __init__(self, db: Database, sync_commits: bool) -> None:
        self._db = db
        self._settings = (db.url.render_as_string(hide_password=False), sync_commits)
        self._child: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._fallback: ThreadBackend | None = None

    def start(self) -> None:
        """Start the process now, so that the first batch does not wait for it."""
        if self._child is None and self._fallback is None:
            self._child = asyncio.get_running_loop().create_task(self._spawn())

    async def write(self, records: list[Record]) -> list[str]:
        if self._fallback is not None:
            return await self._fallback.write(records)
        self.start()
        assert self._child is not None
        try:
            child = await self._child
        except StartFailed as err:
            return await self._fall_back(err, records)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                reply = await _exchange(child, records)
        # uvloop raises RuntimeError for a write to a pipe it has seen close.
        except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError) as err:
            code = await self._stop()
            what = "did not answer" if isinstance(err, TimeoutError) else "exited"
            raise WriteFailed(f"the store's writer process {what} (code {code})", True) from None
        return _outcome(reply)

    async def _spawn(self) -> asyncio.subprocess.Process:
        try:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                CHILD_MODULE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=_child_env(),
            )
        except OSError as err:
            raise StartFailed(f"{sys.executable} cannot be started: {err}") from None
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(frame(self._settings))  # the URL may hold a password: not argv
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                ready = await _read_reply(child.stdout)
        except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError):
            ready = None
        if ready != READY:
            await _end(child)
            raise StartFailed(f"exit code {child.returncode}; see its output above")
        return child

    async def _fall_back(self, err: StartFailed, records: list[Record]) -> list[str]:
        log.error(
            "inference store: the writer process (%s -m %s) did not start (%s); writing "
            "in a thread of this worker instead",
            sys.executable,
            CHILD_MODULE,
            err,
        )
        self._child = None
        self._fallback = ThreadBackend(self._db)
        return await self._fallback.write(records)

    async def _stop(self) -> int | None:
        task, self._child = self._child, None
        if task is None:
            return None
        try:
            child = await task  # if it is still starting, let it (bounded by READY_TIMEOUT_S)
        except StartFailed:
            return None
        return await _end(child)

    async def close(self) -> None:
        await self._stop()
        if self._fallback is not None:
            await self._fallback.close()


def _child_env() -> dict[str, str]:
    # The worker's import path, so that the process finds the same Switchyard (an
    # --app-dir, a path a launcher added at run time).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # Its worker reports the store's metrics; the process would only add files there.
    env.pop(MULTIPROCESS_DIR, None)
    return env


async def _exchange(child: asyncio.subprocess.Process, records: list[Record]) -> Any:
    assert child.stdin is not None and child.stdout is not None
    header, data = frame_parts(records)
    child.stdin.write(header)
    child.stdin.write(data)
    await child.stdin.drain()
    return await _read_reply(child.stdout)


async def _read_reply(stdout: asyncio.StreamReader) -> Any:
    header = await stdout.readexactly(HEADER)
    return parse(await stdout.readexactly(int.from_bytes(header, "big")))


async def _end(child: asyncio.subprocess.Process) -> int:
    """Close the process's input and wait for it to finish its batch; kill it if stuck."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        return await asyncio.wait_for(child.wait(), CHILD_EXIT_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        return await child.wait()


def _outcome(reply: tuple[Any, ...]) -> list[str]:
    kind = reply[0]
    if kind == "ok":
        problems: list[str] = reply[1]
        return problems
    if kind == "failed":
        raise WriteFailed(reply[1], reply[2])
    raise RuntimeError(f"the store's writer process failed on a batch: {reply[1]}")
