"""Stored chat completions: one row each, ordered by (created_us, seq).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_completions",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
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
    )
    op.create_index("ux_chat_completions_id", "chat_completions", ["id"], unique=True)
    op.create_index("ix_chat_completions_order", "chat_completions", ["created_us", "seq"])
    op.create_index(
        "ix_chat_completions_model_order", "chat_completions", ["model", "created_us", "seq"]
    )


def downgrade() -> None:
    op.drop_table("chat_completions")
