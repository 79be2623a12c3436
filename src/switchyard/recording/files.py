"""Reading and writing cassette files, safely when several processes record at once.

Writers from several processes (``--workers N``) append under an exclusive ``flock`` on a
hidden lock file beside the cassette (``.<name>.json.lock``), re-reading the file first,
and replace it atomically (temporary file, fsync, ``os.replace``), so readers never see
half a file and no worker loses another's interactions. The lock file also holds the id of
the record session that last wrote the cassette: the first write of a new ``record``
session starts the cassette afresh, later writes of the same session append.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import multiprocessing
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from switchyard.recording.cassette import FORMAT_VERSION, Cassette, Interaction

__all__ = [
    "NotACassette",
    "append_interaction",
    "cassette_path",
    "list_cassettes",
    "load_cassette",
    "save_cassette",
    "session_id",
]


def cassette_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.json"


def list_cassettes(directory: Path) -> list[Path]:
    """The cassette files of a directory, sorted by name (lock files are hidden)."""
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


class NotACassette(ValueError):
    """A JSON file that is no cassette at all (a ``package.json``, a Llama Stack
    recording), as opposed to a cassette that is broken."""


def load_cassette(path: Path) -> Cassette:
    """Read a cassette; :class:`ValueError` naming the file for anything malformed,
    :class:`NotACassette` for a JSON file that is not meant to be one."""
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict) or not document.keys() & {"version", "interactions"}:
        if isinstance(document, dict) and document.keys() >= {"request", "response"}:
            raise NotACassette(
                f"{path}: a Llama Stack recording, not a cassette; convert its folder with "
                "`switchyard cassettes import-llama-stack`"
            )
        raise NotACassette(f'{path}: not a cassette (no "version" or "interactions")')
    try:
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported cassette version {document.get('version')!r}")
        return Cassette(
            name=str(document.get("name") or path.stem),
            interactions=[Interaction.from_json(item) for item in document["interactions"]],
            ignore_fields=[str(f) for f in document.get("ignore_fields") or ()],
            path=path,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a Switchyard cassette ({err!r})") from None


def save_cassette(cassette: Cassette, path: Path | None = None) -> Path:
    """Write atomically: readers see the old file or the new one, never a torn one."""
    target = path or cassette.path
    if target is None:
        raise ValueError(f"cassette {cassette.name!r} has no path")
    _write(target, _render(cassette.to_json()) + b"\n")
    cassette.path = target
    return target


def ensure_cassette(path: Path) -> None:
    """An empty cassette at ``path`` unless one is there (a record mode's start): a
    recording that made no call to a provider replays as what it is, nothing, and any
    call then is a ``replay_miss``, instead of replay refusing for want of a file."""
    if path.exists():  # taking the lock would write (a read-only checkout replays)
        return
    with _locked(path):  # workers starting together write it once
        if not path.exists():
            save_cassette(Cassette(name=path.stem), path)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # The name cut short: mkstemp adds 8 characters and the suffix 4, and a cassette's own
    # name may already take up to the 255 bytes a file name can have.
    prefix = f".{target.name[:64]}."
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide cassettes from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# How _render ends a cassette that holds interactions (the document's last key, one level
# in, its items two levels in), so that one more can be spliced in before the end.
_ITEM_LEVEL = 2
_END = b"\n  ]\n}\n"
# The bytes this process last wrote to the cassettes it appended to last.
_written: dict[Path, bytes] = {}
_written_lock = threading.Lock()
_REMEMBERED = 8


def _render(value: Any, level: int = 0, key: str = "") -> bytes:
    """Indented JSON that stays short: lists of numbers or strings (embeddings) on one
    line, and one line per stream event, so that a diff shows which events changed."""
    if isinstance(value, dict) and value:
        pad = b"\n" + b"  " * (level + 1)
        items = (pad + orjson.dumps(k) + b": " + _render(v, level + 1, k) for k, v in value.items())
        return b"{" + b",".join(items) + b"\n" + b"  " * level + b"}"
    if isinstance(value, list) and value and (key == "events" or not _all_scalars(value)):
        pad = b"\n" + b"  " * (level + 1)
        if key == "events":
            items = (pad + orjson.dumps(item) for item in value)
        else:
            items = (pad + _render(item, level + 1) for item in value)
        return b"[" + b",".join(items) + b"\n" + b"  " * level + b"]"
    return orjson.dumps(value)


def _all_scalars(values: list[Any]) -> bool:
    return all(not isinstance(v, (dict, list)) for v in values)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """Hold an exclusive lock for ``path``; yields the lock file, whose text is the id of
    the record session that last wrote the cassette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with lock_path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def append_interaction(path: Path, interaction: Interaction, session: str | None = None) -> None:
    """Add ``interaction`` to the cassette at ``path``, safely across processes.

    With ``session`` (record mode), the first write of a session that did not write the
    cassette last drops what was there, so ``record`` overwrites; ignore settings are kept.
    """
    with _locked(path) as lock:
        lock.seek(0)
        fresh = session is not None and lock.read().strip() != session
        data = None if fresh else _spliced(path, interaction)
        if data is None:
            data = _render(_added(path, interaction, fresh)) + b"\n"
        _write(path, data)
        if fresh:  # noted once the cassette is written: a failed write starts afresh again
            lock.seek(0)
            lock.truncate()
            lock.write(str(session))
            lock.flush()
        _remember(path, data)


def _added(path: Path, interaction: Interaction, fresh: bool) -> Any:
    """The cassette document read from ``path`` with ``interaction`` added (the only
    interaction, for the first write of a record session)."""
    try:
        cassette = load_cassette(path) if path.exists() else Cassette(name=path.stem, path=path)
    except ValueError:
        if not fresh:
            raise  # appending: what is there is someone's recording, not to be lost
        # Starting afresh anyway: a cassette broken by hand does not stop a new recording.
        cassette = Cassette(name=path.stem, path=path)
    if fresh:
        cassette.interactions = []
    cassette.interactions.append(interaction)
    return cassette.to_json()


def _remember(path: Path, data: bytes) -> None:
    # Appends to different cassettes run in different threads (asyncio.to_thread).
    with _written_lock:
        _written.pop(path.absolute(), None)
        _written[path.absolute()] = data
        while len(_written) > _REMEMBERED:  # the one appended to longest ago goes
            del _written[next(iter(_written))]


def _spliced(path: Path, interaction: Interaction) -> bytes | None:
    """The cassette with ``interaction`` added, made from the bytes this process last
    wrote there if the file still holds exactly them (no other process wrote since), or
    None. Reading and rendering the whole cassette for each interaction took most of the
    time of a recording: 80 s for 1,000 interactions, 7.8 s now (bench/NOTES.md, 18)."""
    with _written_lock:
        last = _written.get(path.absolute())
    if last is None or not last.endswith(_END):
        return None
    try:
        if path.read_bytes() != last:
            return None
    except FileNotFoundError:
        return None
    item = _render(interaction.to_json(), _ITEM_LEVEL)
    return last[: -len(_END)] + b",\n" + b"  " * _ITEM_LEVEL + item + _END


def session_id() -> str:
    """A new id for one server run, shared by all of its worker processes.

    uvicorn starts its workers with ``multiprocessing``, so a worker's parent is the
    server's main process, whose pid and start time every worker derives the same id
    from. A single-process server (or a test's in-process one) gets a fresh random id:
    call this once per server.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return uuid.uuid4().hex[:16]
    raw = f"{os.uname().nodename}:{parent.pid}:{_start_time(parent.pid)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"  # no /proc (macOS): the pid alone must do
    # Field 22, counted after the command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[19]
