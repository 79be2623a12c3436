"""Completions the database did not take before shutdown, kept in a file until it does.

A worker that stops while its database is down writes what is still queued after
``close_timeout`` to ``<data_dir>/store-unwritten/`` as JSON lines, one completion per
line (the request and the answer as the client sent and got them), instead of losing
it. The next worker that opens the store claims each file by renaming it (so that of
several workers only one takes it), queues its completions again, and deletes it once
they are written. A file claimed by a process that is gone is claimed again; inserts
ignore ids already written, so a completion read twice is stored once.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from switchyard.store.record import Record

log = logging.getLogger(__name__)

SAVED = ".jsonl"
CLAIMED = ".claimed"  # <stem>.<pid>.claimed


def save(directory: Path, records: Sequence[Record]) -> Path:
    """Write ``records`` to a new file in ``directory``, durably; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    partial = directory / f"{stem}.partial"
    with open(partial, "wb") as out:
        out.writelines(orjson.dumps(_line(record)) + b"\n" for record in records)
        out.flush()
        os.fsync(out.fileno())
    path = directory / f"{stem}{SAVED}"
    os.replace(partial, path)  # complete or absent: never half a file under its name
    return path


def claim(directory: Path) -> list[tuple[Path, list[Record]]]:
    """Take every saved file no running process has taken: (its new path, its records)."""
    if not directory.is_dir():
        return []
    taken = []
    for path in sorted(directory.iterdir()):
        if not (path.name.endswith(SAVED) or _orphaned(path)):
            continue
        mine = directory / f"{path.name.split('.')[0]}.{os.getpid()}{CLAIMED}"
        try:
            os.rename(path, mine)
        except FileNotFoundError:
            continue  # another worker claimed it first
        taken.append((mine, _read(mine)))
    return taken


def _orphaned(path: Path) -> bool:
    parts = path.name.split(".")
    if len(parts) != 3 or "." + parts[2] != CLAIMED or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _line(record: Record) -> dict[str, Any]:
    request, answer, provider_id, started, finished, upstream_id, streamed, caller, our_id = record
    # Both are text Switchyard parsed (the request) or wrote (the answer): UTF-8.
    return {
        "id": our_id,
        "provider_id": provider_id,
        "started": started,
        "finished": finished,
        "provider_completion_id": upstream_id,
        "streamed": streamed,
        "caller": caller,
        "request": request.decode(),
        "answer": answer.decode(),
    }


def _read(path: Path) -> list[Record]:
    records: list[Record] = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                records.append(_record(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                log.error("inference store: %s line %d is not a completion: %r", path, number, err)
    return records


def _record(item: dict[str, Any]) -> Record:
    return (
        item["request"].encode(),
        item["answer"].encode(),
        item["provider_id"],
        item["started"],
        item["finished"],
        item["provider_completion_id"],
        item["streamed"],
        item["caller"],
        item["id"],
    )
