"""Alembic migrations of the inference store; run at start by :mod:`switchyard.store.migrate`."""
