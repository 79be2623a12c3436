"""Alembic's entry point, run by ``command.upgrade``: migrate the connection we were given.

The caller opens the transaction (and takes the lock that keeps several workers from
migrating at once), so migrations run inside it and commit or roll back as one.
"""

from __future__ import annotations

from alembic import context

from switchyard.store.migrate import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
