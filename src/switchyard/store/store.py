"""The inference store as the server sees it: the completion sink, and the reads.

Reads run in their own thread pool. Before each, the store waits (briefly) for the
writes this worker has already accepted, so a client that creates a completion and
then lists or deletes it through the same worker sees it even with async durability.
Another worker's queue is not visible: across workers, reads are eventually consistent
unless ``durability: sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from switchyard.config import StoreConfig
from switchyard.errors import InvalidRequestError, NotFoundError, SwitchyardError
from switchyard.sink import Record, StoredCall
from switchyard.store import queries
from switchyard.store.engine import Database
from switchyard.store.failures import is_transient, short_error
from switchyard.store.queries import ListQuery, Order, UnknownCursorError
from switchyard.store.rows import completion_object, message_id, message_object
from switchyard.store.writer import Writer

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_BARRIER_S = 2.0
READ_THREADS = 4


class StoreUnavailableError(SwitchyardError):
    """The store's database cannot be reached right now; the client may retry."""

    status = 503
    error_type = "store_unavailable"


@dataclass(slots=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.data[0]["id"] if self.data else None,
            "last_id": self.data[-1]["id"] if self.data else None,
            "has_more": self.has_more,
        }


# The objects are made in the read's thread, not on the event loop: a stream stored as
# its chunks is assembled then (rows.py), which for a page of long streams takes
# milliseconds that other requests would otherwise wait through.
def _listed(db: Database, query: ListQuery) -> tuple[list[dict[str, Any]], bool]:
    rows, more = queries.list_rows(db, query)
    return [completion_object(row) for row in rows], more


def _got(
    db: Database, read: Callable[..., sa.Row[Any] | None], *args: Any
) -> dict[str, Any] | None:
    row = read(db, *args)
    return None if row is None else completion_object(row)


def _not_found(completion_id: str) -> NotFoundError:
    return NotFoundError(
        f"No stored chat completion '{completion_id}'. GET /v1/chat/completions lists the "
        "stored ones; a completion is stored only if the request did not set store: false "
        "(and, with store.policy opt-in, set store: true).",
        param="completion_id",
    )


class InferenceStore:
    """Implements :class:`~switchyard.server.state.CompletionSink`, plus the reads."""

    def __init__(self, db: Database, config: StoreConfig, spill_dir: Path | None = None) -> None:
        self.db = db
        self.config = config
        self.writer = Writer(db, config, spill_dir)
        # The sink's hand-over, once per completion on the request's path: with async
        # durability the writer's own put, so that nothing stands between.
        self.hand_over: Callable[[Record], Awaitable[None] | None] = (
            self.writer.put if config.durability == "async" else self._hand_over_sync
        )
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="switchyard-store-read")

    async def open(self) -> None:
        await self.writer.start()

    # -- the sink ---------------------------------------------------------------

    def should_store(self, body: dict[str, Any]) -> bool:
        wanted = body.get("store")
        if wanted is False:
            return False
        return wanted is True or self.config.policy == "all"

    async def completion_finished(self, call: StoredCall) -> None:
        record = self.writer.to_record(call)
        waiting = None if record is None else self.hand_over(record)
        if waiting is not None:
            await waiting

    async def _hand_over_sync(self, record: Record) -> None:
        """Sync durability: wait (up to ``sync_timeout``) until the row is committed."""
        position: int | None = None
        try:
            async with asyncio.timeout(self.config.sync_timeout):
                position = await self.writer.put_waiting(record)
                if position is not None:
                    await self.writer.wait_settled(position)
        except TimeoutError:
            if position is None:
                self.writer.note_dropped(1, "queue full")
                return
            log.warning(
                "inference store: a completion is answered before its row is written "
                "(not within store.sync_timeout=%ss; it stays queued)",
                self.config.sync_timeout,
            )

    async def close(self) -> None:
        await self.writer.close()
        await asyncio.to_thread(self._reads.shutdown)
        await asyncio.to_thread(self.db.dispose)

    # -- reads --------------------------------------------------------------------

    async def list_completions(self, query: ListQuery) -> Page:
        try:
            items, more = await self._run(_listed, query)
        except UnknownCursorError:
            raise InvalidRequestError(
                f"'after' names no stored chat completion ({query.after!r}); pass the "
                "last_id of the previous page.",
                param="after",
            ) from None
        return Page(items, more)

    async def get_completion(self, completion_id: str) -> dict[str, Any]:
        found = await self._run(_got, queries.get_row, completion_id)
        if found is None:
            raise _not_found(completion_id)
        return found

    async def list_messages(
        self, completion_id: str, after: str | None, limit: int, order: Order
    ) -> Page:
        messages = await self._run(queries.get_input_messages, completion_id)
        if messages is None:
            raise _not_found(completion_id)
        items = [message_object(completion_id, i, m) for i, m in enumerate(messages)]
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise InvalidRequestError(
                    f"'after' names no message of {completion_id} ({after!r}); message "
                    f"ids look like {message_id(completion_id, 0)}.",
                    param="after",
                )
            items = items[ids.index(after) + 1 :]
        return Page(items[:limit], len(items) > limit)

    async def update_metadata(
        self, completion_id: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        found = await self._run(_got, queries.update_metadata, completion_id, metadata)
        if found is None:
            raise _not_found(completion_id)
        return found

    async def delete_completion(self, completion_id: str) -> dict[str, Any]:
        if not await self._run(queries.delete_row, completion_id):
            raise _not_found(completion_id)
        return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # Read this worker's own accepted writes first (bounded: a down database
        # must not hold reads longer than it takes to say so).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READ_BARRIER_S):
                await self.writer.wait_all_settled()
        if not self.writer.ready:
            raise StoreUnavailableError(
                "The inference store's database is not reachable yet; retry shortly."
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reads, fn, self.db, *args)
        except sa.exc.SQLAlchemyError as err:
            if not is_transient(err):
                # Refused, not down (no permission to delete, say): the operator's to
                # fix, which the log says; the client gets a 503, not a traceback.
                log.error("inference store: the database refused: %s", short_error(err))
                raise StoreUnavailableError(
                    "The inference store's database refused the operation; the server's "
                    "log says why."
                ) from None
            log.warning("inference store read failed: %s", short_error(err))
            raise StoreUnavailableError(
                "The inference store's database is not reachable right now; retry shortly."
            ) from None
