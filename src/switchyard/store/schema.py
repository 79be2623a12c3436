"""The tables as the queries see them; migrations/ creates and changes them.

Order: listings sort on ``(created_us, seq)``. ``created_us`` is Switchyard's clock when
the request arrived (providers' own ``created`` can repeat, e.g. in replays) and
``seq`` is the row's integer key, unique and assigned by the database, so rows that
share a timestamp still have one total order and keyset pagination is exact. The
``model`` index carries the same two columns, so a model filter walks one index range.

JSON columns hold what the client sent and got, unchanged; a stream's ``completion``
is its chunks (a JSON array, as ``server/stream.py``'s tap keeps them), assembled when
read (``rows.py``; rows written before revision 0002 hold it assembled). Keep this file in step with
the newest migration: ``tests/store/test_migrations.py`` compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite makes an INTEGER PRIMARY KEY the rowid (cheap, monotonic); PostgreSQL needs 64 bits.
SEQ_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

chat_completions = sa.Table(
    "chat_completions",
    metadata,
    sa.Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("created_us", sa.BigInteger(), nullable=False),
    sa.Column("finished_us", sa.BigInteger(), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("provider_id", sa.String(128), nullable=False),
    sa.Column("provider_completion_id", sa.String(256), nullable=True),
    sa.Column("caller", sa.String(128), nullable=True),
    sa.Column("streamed", sa.Boolean(), nullable=False),
    sa.Column("completion", sa.JSON(), nullable=False),
    sa.Column("input_messages", sa.JSON(), nullable=False),
    sa.Column("request", sa.JSON(), nullable=False),
    sa.Column("metadata", sa.JSON(), nullable=True),
    sa.Index("ux_chat_completions_id", "id", unique=True),
    sa.Index("ix_chat_completions_order", "created_us", "seq"),
    sa.Index("ix_chat_completions_model_order", "model", "created_us", "seq"),
)
