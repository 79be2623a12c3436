"""The writer process: ``python -m switchyard.store.child``, started by a worker.

It reads batches of records from stdin and answers each on its own pipe, one frame
each way (``frames``). The first frame it reads is its settings (database URL, commit
mode). It answers READY once it is set up. It ends when stdin ends: when its worker has
handed over its last rows, or has died. It runs in a session of its own, so a
terminal's Ctrl-C does not reach it, and it ignores SIGINT and SIGTERM for a service
manager that signals every process of the service: the worker still has rows to hand
over, and closes its input when it is done.

Why a process: the writer's CPU (parsing, assembling streams, SQLite) shared the
worker's GIL as a thread and cost 15-30% of the throughput at saturation
(bench/NOTES.md, section 14).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sqlalchemy.engine import make_url

from switchyard.store.batch import WriteFailed, write_records
from switchyard.store.engine import open_database
from switchyard.store.frames import READY, frame, read_frame


def answer(records: list[Any], db: Any) -> tuple[Any, ...]:
    try:
        return ("ok", write_records(db, records))
    except WriteFailed as err:
        return ("failed", err.message, err.transient)
    except Exception as err:  # a bug: the worker counts the batch as lost and says why
        return ("error", f"{type(err).__name__}: {err}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Answers get a private copy of stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    settings = read_frame(requests)
    if settings is None:
        return
    url, sync_commits = settings
    db = open_database(make_url(url), sync_commits=sync_commits)
    replies.write(frame(READY))
    replies.flush()
    try:
        while (records := read_frame(requests)) is not None:
            replies.write(frame(answer(records, db)))
            replies.flush()
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
