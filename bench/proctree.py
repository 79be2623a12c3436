"""Processes the benchmark starts, and what they cost, read from /proc (Linux).

Every process is started in its own session (so its process group is ours to signal
and a Ctrl-C in the terminal reaches only the harness, which then stops things in
order). Stopping sends SIGTERM to the group, waits, then SIGKILLs the group and any
descendant seen earlier that left it; a PID is only signalled while its start time
still matches, so a recycled PID is never hit.

CPU of a tree = utime + stime of every live process in it, plus cutime + cstime
(children that were reaped) of each, so work done by short-lived children is not lost.
RSS of a tree = the sum of its processes' resident sets, sampled by :class:`Sampler`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat from field 3 (state) on; None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Start time in ticks since boot, None for a gone or zombie process."""
    fields = _stat(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def parent(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def children(pid: int) -> list[int]:
    """Direct children, from /proc/PID/task/*/children (one small read per thread)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return found


def tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if start_time(pid) is not None:
            out.append(pid)
            todo += children(pid)
    return out


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in tree(root))


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def own_cpu_seconds() -> float:
    """This process and the children it has waited for (the load generators)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Managed:
    """A process tree we started; see the module docstring for how it is stopped."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.seen: dict[int, int | None] = {self.pid: start_time(self.pid)}
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """The live tree; every PID in it is remembered for the final clean-up."""
        pids = tree(self.pid) if self.alive() else []
        with self._lock:
            for pid in pids:
                self.seen.setdefault(pid, start_time(pid))
        return pids

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        self.pids()
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        self._signal_group(signal.SIGKILL)
        with self._lock:
            leftovers = [(p, st) for p, st in self.seen.items() if st is not None]
        for pid, started in leftovers:
            if start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group id is our child's PID; while that child is unreaped it cannot be reused.
        if self.popen.returncode is None or sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)


@dataclass
class RssTrack:
    """Peak RSS of one tree (sum), of each process in it, and of each worker with the
    store writer it started (the writer exists because the worker's store is on, so
    "RSS per worker, store on" counts both); optionally a timeline."""

    peak_total: int = 0
    peak_by_pid: dict[int, int] = field(default_factory=dict)
    peak_by_worker: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] | None = None  # (t, tree total, largest worker)

    def add(self, sizes: dict[int, int]) -> None:
        self.peak_total = max(self.peak_total, sum(sizes.values()))
        workers: dict[int, int] = {}
        for pid, size in sizes.items():
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), size)
            if pid not in self.names:
                self.names[pid] = cmdline(pid)[:160]
            owner = pid
            if WRITER_MARK in self.names[pid]:
                owner = parent(pid) or pid
            workers[owner] = workers.get(owner, 0) + size
        for pid, size in workers.items():
            self.peak_by_worker[pid] = max(self.peak_by_worker.get(pid, 0), size)
        if self.timeline is not None and sizes:
            self.timeline.append((time.monotonic(), sum(sizes.values()), max(workers.values())))


# In the command line of a worker's store writer (python -m switchyard.store.child).
WRITER_MARK = "switchyard.store.child"


class Sampler(threading.Thread):
    """Samples the RSS of the watched trees every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.watched: dict[str, tuple[Managed, RssTrack]] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def watch(self, proc: Managed) -> RssTrack:
        track = RssTrack()
        with self._lock:
            self.watched[proc.name] = (proc, track)
        self.sample(proc, track)
        return track

    def unwatch(self, proc: Managed) -> None:
        with self._lock:
            self.watched.pop(proc.name, None)

    @staticmethod
    def sample(proc: Managed, track: RssTrack) -> None:
        track.add({pid: rss_bytes(pid) for pid in proc.pids()})

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            with self._lock:
                items = list(self.watched.values())
            for proc, track in items:
                self.sample(proc, track)

    def stop(self) -> None:
        self._stop_event.set()
