"""Completions the database did not take before shutdown, kept in a file until it does.

A worker that stops while its database is down writes what is still queued after
``close_timeout`` to ``<data_dir>/store-unwritten/`` as JSON lines, one completion per
line (the request and the answer as the client sent and got them), instead of losing
it. A later worker claims one file at a time, when its queue is empty, queues its
completions again, and deletes the file once every one of them is settled with none
lost on the way (written, refused by the database, or saved again at a shutdown).

A claim is an exclusive ``flock`` held while the worker runs: it ends with the process
however the process ends, so a file whose claimant died is claimed again, and it does
not depend on process ids (which containers reuse). A file read twice is harmless:
inserts ignore ids already written.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from switchyard.store.record import Record, as_events

log = logging.getLogger(__name__)

SAVED = ".jsonl"
CLAIMED = ".claimed"


@dataclass
class Claim:
    """A saved file this process holds (its lock lives as long as ``handle``)."""

    path: Path
    handle: IO[bytes]
    records: list[Record]

    def release(self, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
        self.handle.close()


def save(directory: Path, records: Sequence[Record]) -> Path:
    """Write ``records`` to a new file in ``directory``, durably; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(8)}"
    partial = directory / f"{stem}.partial"
    with open(partial, "xb") as out:
        out.writelines(orjson.dumps(_line(record)) + b"\n" for record in records)
        out.flush()
        os.fsync(out.fileno())
    path = directory / f"{stem}{SAVED}"
    os.replace(partial, path)  # complete or absent: never half a file under its name
    _sync_directory(directory)
    return path


def claim_one(directory: Path) -> Claim | None:
    """Take one saved file that no running process holds, or None if there is none."""
    if not directory.is_dir():
        return None
    for path in sorted(directory.iterdir()):
        if path.suffix in (SAVED, CLAIMED) and (claim := _claim(path)) is not None:
            return claim
    return None


def _claim(path: Path) -> Claim | None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open: it holds the lock
    except FileNotFoundError:
        return None  # another worker renamed or deleted it meanwhile
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(handle.fileno()).st_nlink == 0:
            raise FileNotFoundError(path)  # deleted by the worker that wrote it out
        if path.suffix == SAVED:
            claimed = path.with_suffix(CLAIMED)
            os.rename(path, claimed)
            path = claimed
        return Claim(path, handle, _read(handle, path))
    except (BlockingIOError, FileNotFoundError):  # held by a live process, or gone
        handle.close()
        return None


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _line(record: Record) -> dict[str, Any]:
    # Whether the answer was checked is not kept: read back from a file, it is parsed.
    request, answer, provider_id, started, finished, upstream_id = record[:6]
    streamed, caller, our_id = record[6:9]
    return {
        "id": our_id,
        "provider_id": provider_id,
        "started": started,
        "finished": finished,
        "provider_completion_id": upstream_id,
        "streamed": streamed,
        "caller": caller,
        **_text("request", request),
        **_text("answer", as_events(answer) if streamed else answer),
    }


def _text(key: str, data: bytes) -> dict[str, str]:
    # Readable when it is UTF-8 (always, for what Switchyard parsed or wrote); base64
    # otherwise, so that one odd record cannot cost the others their place in the file.
    try:
        return {key: data.decode()}
    except UnicodeDecodeError:
        return {f"{key}_base64": base64.b64encode(data).decode()}


def _read(lines: IO[bytes], path: Path) -> list[Record]:
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(_record(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
            log.error("inference store: %s line %d is not a completion: %r", path, number, err)
    return records


def _record(item: dict[str, Any]) -> Record:
    return (
        _bytes(item, "request"),
        _bytes(item, "answer"),
        item["provider_id"],
        item["started"],
        item["finished"],
        item["provider_completion_id"],
        item["streamed"],
        item["caller"],
        item["id"],
        False,
    )


def _bytes(item: dict[str, Any], key: str) -> bytes:
    text: str | None = item.get(key)
    if text is not None:
        return text.encode()
    return base64.b64decode(item[f"{key}_base64"], validate=True)


class Claims:
    """The files one writer holds. Each is deleted once every completion it held is
    settled, provided none of its own was lost meanwhile (a failed save, a writer error);
    else it is only released, to be claimed again. A loss elsewhere in the queue does not
    keep it: claimed again, its rows already written would be inserted again, and those
    deleted since would come back."""

    def __init__(self) -> None:
        self._held: list[tuple[Claim, int, int]] = []  # claim, its queue positions

    def add(self, claim: Claim, first: int, last: int) -> None:
        self._held.append((claim, first, last))

    def settled(self, position: int, lost: Lost) -> list[tuple[Claim, bool]]:
        """Take the claims settled up to ``position``: (claim, whether to delete it)."""
        done = [
            (c, _intact(first, last, lost)) for c, first, last in self._held if last <= position
        ]
        self._held = [held for held in self._held if held[2] > position]
        return done

    def rest(self, lost: Lost) -> list[tuple[Claim, bool]]:
        """Take every claim left (at shutdown, once the rest is written or saved)."""
        done = [(c, _intact(first, last, lost)) for c, first, last in self._held]
        self._held = []
        return done


Lost = list[tuple[int, int]]  # queue positions (first, last) of rows lost


def _intact(first: int, last: int, lost: Lost) -> bool:
    return not any(a <= last and first <= b for a, b in lost)
