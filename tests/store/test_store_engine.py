"""Choosing the backend from one setting: store.url or SWITCHYARD_STORE_URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from switchyard.config import config_from_dict
from switchyard.errors import ConfigError
from switchyard.store.engine import open_database, store_url


def url_for(raw: dict[str, object], env: dict[str, str] | None = None) -> str:
    config = config_from_dict(raw, "<test>", env or {})
    return store_url(config).render_as_string(hide_password=False)


def test_the_default_is_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    assert url_for({"data_dir": str(tmp_path)}) == f"sqlite:///{tmp_path}/switchyard.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg_3(scheme: str) -> None:
    url = url_for({"store": {"url": f"{scheme}://postgres@127.0.0.1:5432/test"}})
    assert url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_the_environment_variable_sets_the_url() -> None:
    env = {"SWITCHYARD_STORE_URL": "postgresql://u:secret@db:5432/store"}
    assert url_for({}, env) == "postgresql+psycopg://u:secret@db:5432/store"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://root@localhost/db", "supports sqlite:/// and postgresql://"),
        ("not a url", "is not a database URL"),
        ("sqlite://", "SQLite needs a file path"),
        ("postgresql://u@db:abc/store", "is not a database URL"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("sqlite:///file::memory:?cache=shared", "in-memory SQLite"),
    ],
)
def test_unusable_urls_fail_at_start_with_a_hint(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        url_for({"store": {"url": raw}})


def test_an_unwritable_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = config_from_dict({"store": {"url": f"sqlite:///{blocker}/sub/s.db"}}, "<test>", {})
    with pytest.raises(ConfigError, match="cannot create the store's folder"):
        open_database(store_url(config))


def test_sqlite_binds_bool_and_none_as_the_driver_does_without_adapters(tmp_path: Path) -> None:
    # The engine registers adapters that skip the driver's failed conversion look-ups;
    # what a row holds must be what sqlite3 stores without them: 1/0 and NULL.
    db = open_database(make_url(f"sqlite:///{tmp_path}/s.db"))
    try:
        connection = db.writer_connection().connection.dbapi_connection
        assert connection is not None
        connection.execute("CREATE TABLE t (flag BOOLEAN, who VARCHAR)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", [(True, None), (False, "k")])
        got = connection.execute("SELECT flag, typeof(flag), who, typeof(who) FROM t").fetchall()
        assert got == [(1, "integer", None, "null"), (0, "integer", "k", "text")]
    finally:
        db.dispose()


def test_the_adapters_are_registered_unless_the_application_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bool_key = (bool, sqlite3.PrepareProtocol)
    monkeypatch.delitem(sqlite3.adapters, bool_key, raising=False)
    open_database(make_url(f"sqlite:///{tmp_path}/a.db")).dispose()
    assert sqlite3.adapters[bool_key] is int  # the cheap binding is in place

    def yes_no(value: bool) -> str:
        return "yes" if value else "no"

    monkeypatch.setitem(sqlite3.adapters, bool_key, yes_no)  # an application's own
    db = open_database(make_url(f"sqlite:///{tmp_path}/b.db"))
    try:
        connection = db.writer_connection().connection.dbapi_connection
        assert connection is not None
        assert connection.execute("SELECT ?", (True,)).fetchone() == ("yes",)
    finally:
        db.dispose()
