"""Writing one batch of records: where the store's CPU goes, off the request path.

:func:`write_records` runs in the writer process (or the writer thread): it parses
each record into a row and inserts the rows in one transaction. Its outcome crosses
the process boundary, so it is plain data: the records it could not make into rows,
or a :class:`WriteFailed` that says whether a retry may succeed.
"""

from __future__ import annotations

import sqlalchemy as sa

from switchyard.store.engine import Database
from switchyard.store.failures import is_transient, short_error
from switchyard.store.queries import Values, insert_rows
from switchyard.store.record import MalformedRecord, Record, row_values


class WriteFailed(Exception):
    """The database did not take the batch; ``transient``: retrying may succeed."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message, transient)
        self.message = message
        self.transient = transient


def write_records(db: Database, records: list[Record]) -> list[str]:
    """Insert the rows of ``records`` in one transaction. Returns one line per record
    that is not a chat completion (it is left out, the others are written)."""
    rows: list[Values] = []
    problems: list[str] = []
    for record in records:
        try:
            rows.append(row_values(record))
        except MalformedRecord as err:
            problems.append(f"cannot convert a completion of {record[2]}: {err}")
        except Exception as err:  # a bug in the conversion must cost this row, not the batch
            problems.append(f"cannot convert a completion of {record[2]}: {err!r}")
    if rows:
        try:
            insert_rows(db, rows)
        except sa.exc.SQLAlchemyError as err:
            raise WriteFailed(short_error(err), is_transient(err)) from None
    return problems
