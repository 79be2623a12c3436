"""The inference store: every chat completion kept, listed and retrieved.

``open_sink`` is the one entry point (called in the app's lifespan). The pieces:
``engine`` (URLs, SQLite/PostgreSQL settings), ``schema`` and ``migrations``
(``migrate`` runs them at start), ``assemble`` (streams to completions), ``rows``
(rows to API objects), ``queries`` (the SQL), ``writer`` (queue, batches, retries),
``spill`` (what shutdown could not write, kept for the next start) and ``store`` (the
sink and the reads the routes use).
"""

from __future__ import annotations

from switchyard.config import Config
from switchyard.sink import CompletionSink
from switchyard.store.engine import open_database, store_url
from switchyard.store.queries import ListQuery
from switchyard.store.store import InferenceStore, Page, StoreUnavailableError


async def open_sink(config: Config) -> CompletionSink | None:
    """The store for ``config``, opened (migrations run), or None when it is off."""
    return await open_store(config) if config.store.enabled else None


async def open_store(config: Config) -> InferenceStore:
    db = open_database(store_url(config), sync_commits=config.store.durability == "sync")
    store = InferenceStore(db, config.store, config.resolved_data_dir() / "store-unwritten")
    await store.open()
    return store


__all__ = [
    "InferenceStore",
    "ListQuery",
    "Page",
    "StoreUnavailableError",
    "open_sink",
    "open_store",
]
