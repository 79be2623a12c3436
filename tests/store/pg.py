"""Throwaway PostgreSQL databases on the shared test server, one per test.

``SWITCHYARD_TEST_POSTGRES`` names the server (default: the one the suite runs
against, ``postgresql://postgres@127.0.0.1:5432/test``); ``off`` skips the
PostgreSQL half of the store tests. A fresh database per test (about 20 ms to create)
keeps parallel runs and tests from seeing each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("SWITCHYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def skip_if_off() -> None:
    if ADMIN_URL == "off":
        pytest.skip("SWITCHYARD_TEST_POSTGRES=off")


@contextlib.contextmanager
def pg_database(host: str | None = None, port: int | None = None) -> Iterator[str]:
    """A new empty database; yields its URL (through ``host:port`` if given, e.g. a proxy)."""
    skip_if_off()
    name = f"switchyard_test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(ADMIN_URL).set(database=name)
    if host is not None:
        url = url.set(host=host, port=port)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def admin_host_port() -> tuple[str, int]:
    url = make_url(ADMIN_URL)
    return url.host or "127.0.0.1", url.port or 5432
