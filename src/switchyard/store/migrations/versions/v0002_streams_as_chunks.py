"""A stream's completion may be stored as its chunks, assembled when read.

No table changes: from this revision on, the chat handler stores a stream's
``completion`` as the JSON array its tap kept (``server/stream.py``) and the reads
assemble it (``rows.py``), which saves the writer most of a stored stream's cost
(bench/NOTES.md, section 62). The revision exists so that a release before it, which
reads only assembled completions, started on such a database serves without its store
(its migration finds no revision 0002, and it logs that) instead of failing on those
rows, and so that ``downgrade`` can assemble them for it. (A worker of that release
already running when another one migrates does fail on them: upgrade workers together.)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchyard.store.rows import stored_completion

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 500
_rows = sa.table(
    "chat_completions",
    sa.column("seq", sa.BigInteger()),
    sa.column("id", sa.String()),
    sa.column("streamed", sa.Boolean()),
    sa.column("completion", sa.JSON()),
)


def upgrade() -> None:
    pass  # older rows hold assembled completions, which the reads take as they are


def downgrade() -> None:
    # Keyset batches by seq: a large store is assembled a batch at a time.
    bind = op.get_bind()
    after = -1
    while True:
        batch = bind.execute(
            sa.select(_rows.c.seq, _rows.c.id, _rows.c.completion)
            .where(_rows.c.streamed.is_(True), _rows.c.seq > after)
            .order_by(_rows.c.seq)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        for seq, completion_id, completion in batch:
            if isinstance(completion, list):
                assembled = stored_completion(completion, completion_id)
                bind.execute(
                    sa.update(_rows).where(_rows.c.seq == seq).values(completion=assembled)
                )
        after = batch[-1][0]
