"""What a real PostgreSQL that refuses does to the store: a database that takes no
writes for now (a hot standby, a primary demoted by a failover) is waited out, not a
reason to drop rows; a refusal is a 503 to the client, never a 500; a provider's id
holding NUL costs nothing; the operator's connection options are kept."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import make_url
from tests.store.helpers import call, eventually, make_store
from tests.store.pg import ADMIN_URL, pg_database
from tests.store.test_store_writer import Snapshot

from switchyard.store import StoreUnavailableError, writer
from switchyard.store.engine import open_database
from switchyard.store.queries import count_rows


def _with_options(url: str, options: str) -> str:
    return f"{url}?options={quote(options)}"


def test_the_operators_connection_options_are_kept_beside_the_stores() -> None:
    with pg_database() as url:
        db = open_database(make_url(_with_options(url, "-c search_path=mine")))
        try:
            with db.reads.connect() as conn:
                assert conn.execute(sa.text("SHOW search_path")).scalar() == "mine"
                assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "30s"
        finally:
            db.dispose()


async def test_a_database_taking_no_writes_is_waited_out_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(writer, "RETRY_MAX_S", 0.05)
    with pg_database() as url:
        first = await make_store(url, tmp_path)  # the schema, made while writable
        await first.close()
        snap = Snapshot()
        standby = _with_options(url, "-c default_transaction_read_only=on")
        store = await make_store(standby, tmp_path, writer="thread", close_timeout=0.5)
        await store.completion_finished(call(1))
        await eventually(lambda: snap.added("STORE_FAILED_WRITES") >= 2, "retried")
        # A delete is refused for now: a 503, not a traceback.
        with pytest.raises(StoreUnavailableError):
            await store.delete_completion("chatcmpl-test-000001")
        await store.close()  # what it could not write is saved, not dropped
        assert snap.added("STORE_DROPPED") == 0

        writable = await make_store(url, tmp_path)  # the primary is back
        try:
            await eventually(lambda: count_rows(writable.db) == 1, "the saved row written")
        finally:
            await writable.close()


async def test_a_provider_id_holding_nul_does_not_cost_the_row(tmp_path: Path) -> None:
    with pg_database() as url:
        store = await make_store(url, tmp_path, durability="sync")
        try:
            stored = call(2)
            stored.provider_completion_id = "p-\x00-2"
            await store.completion_finished(stored)
            got = await store.get_completion("chatcmpl-test-000002")
            assert got["switchyard"]["provider_completion_id"] == "p-\ufffd-2"
        finally:
            await store.close()


async def test_a_refusal_of_the_database_is_a_503_naming_the_log(tmp_path: Path) -> None:
    name = f"switchyard_reader_{secrets.token_hex(4)}"
    role = sql.Identifier(name)
    try:
        with pg_database() as url:
            owner = await make_store(url, tmp_path, durability="sync")
            await owner.completion_finished(call(3))
            await owner.close()
            with psycopg.connect(url, autocommit=True) as admin:  # may read, not delete
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
                admin.execute(
                    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role)
                )
            as_reader = make_url(url).set(username=name)
            reader = await make_store(as_reader.render_as_string(), tmp_path)
            try:
                assert (await reader.get_completion("chatcmpl-test-000003"))["id"]
                with pytest.raises(StoreUnavailableError, match="refused the operation"):
                    await reader.delete_completion("chatcmpl-test-000003")
            finally:
                await reader.close()
    finally:  # its grants went with its database
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
