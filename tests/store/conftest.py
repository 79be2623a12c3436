"""Store fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.store.helpers import make_store, sqlite_url
from tests.store.pg import pg_database

from switchyard.store import InferenceStore

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "store.db")
        return
    with pg_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[InferenceStore]:
    opened = await make_store(store_url)
    yield opened
    await opened.close()
