"""Instructions per request: what each of Switchyard's processes executes for one
request, counted by valgrind (callgrind), not timed.

Times on a shared 2-core VM move 10-30% between runs of the same code, so a change of a
few per cent cannot be told from noise by timing (bench/NOTES.md, sections 44 and 48).
An instruction count is the same from run to run within a fraction of a per cent,
whatever else the machine is doing. It is not time (a cache miss costs more than an
add), but for changes to Python code it follows the CPU time closely.

    python bench/instructions.py                       # this tree, store on and off
    python bench/instructions.py --src /path/to/other/checkout --src .   # an A/B

For each source tree and store setting it starts ``bench/fake_upstream.py`` (natively),
Switchyard under ``valgrind --tool=callgrind --instr-atstart=no`` (so start-up runs
uncounted, ~10x slower than native), warms it up, then per request kind: zeroes the
counters, turns counting on, sends ``--requests`` requests one after the other on one
connection, waits until the worker and the store's writer are idle, turns counting off
and reads each process's total. Requests are sequential so that every run does the
same work: under valgrind a request takes ~10 ms, so the writer gets batches of a few
rows (at saturation it gets larger ones, whose fixed cost per batch is shared by more).

Needs valgrind (``apt install valgrind``). About a minute per variant and two kinds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import payloads
import proctree
from common import BENCH_DIR, PREFIX, BenchError, log
from harness import STORE_OFF_CONFIG
from services import free_port, http_get, switchyard_env, wait_ready, wait_until

KINDS = ("chat", "stream", "embed")


@dataclass
class Variant:
    src: Path
    store: bool
    counts: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> role -> Ir

    @property
    def name(self) -> str:
        return f"{self.src.name or self.src} store {'on' if self.store else 'off'}"


def control(pids: list[int], *args: str) -> None:
    for pid in pids:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


# CPU a process idle under valgrind may still show in a second (two 10 ms ticks).
IDLE_CPU_S = 0.02


def role(pid: int) -> str:
    return "writer" if "switchyard.store.child" in proctree.cmdline(pid) else "worker"


def wait_idle(pids: list[int], quiet_s: float = 1.0, timeout: float = 120.0) -> None:
    """Until none of ``pids`` has used more than a tick or two of CPU in ``quiet_s``: the
    writer has written what it was handed (a row reaches it up to 0.5 s after its
    answer). Not none at all: uvicorn wakes its loop ten times a second, which under
    valgrind can take a tick in some seconds and none in others."""
    deadline = time.monotonic() + timeout
    last = [proctree.cpu_seconds(p) for p in pids]
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = [proctree.cpu_seconds(p) for p in pids]
        if all(b - a <= IDLE_CPU_S for a, b in zip(last, now, strict=True)):
            return
        last = now
    raise BenchError(f"processes {pids} still busy after {timeout:.0f} s")


def send(port: int, kind: str, n: int) -> None:
    body = payloads.request_body(kind, PREFIX)
    path = "/v1" + payloads.request_path(kind)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            problem = payloads.check_answer(kind, response.status, answer)
            if problem:
                raise BenchError(f"{kind}: {problem}: {answer[:300]!r}")
    finally:
        conn.close()


def totals(outdir: Path, pid: int) -> float:
    """The newest dump's instruction total of ``pid``."""
    dumps = sorted(outdir.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise BenchError(f"no callgrind dump of {pid}")
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return float(line.split()[1])
    raise BenchError(f"no total in {dumps[-1]}")


def measure(variant: Variant, args: argparse.Namespace, upstream: str, work: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    (home / "data").mkdir()
    outdir = Path(tempfile.mkdtemp(prefix="cg-", dir=work))
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes"]
    argv += [f"--callgrind-out-file={outdir}/cg.%p", sys.executable, "-m", "switchyard", "run"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if not variant.store:
        (home / "store-off.yaml").write_text(STORE_OFF_CONFIG)
        argv += ["--config", str(home / "store-off.yaml")]
    env = switchyard_env(home, upstream)
    env["PYTHONPATH"] = str(variant.src / "src")
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts, run to run
    log(f"start {variant.name} under callgrind")
    proc = proctree.Managed(variant.name, argv, env, work / f"{outdir.name}.log")
    try:
        wait_ready(port, proc, args.startup_timeout)
        for kind in args.kinds:
            send(port, kind, args.warmup)
        pids = proc.pids()
        wait_idle(pids)
        for kind in args.kinds:
            control(pids, "-z")
            control(pids, "-i", "on")
            send(port, kind, args.requests)
            wait_idle(pids)
            control(pids, "-i", "off")
            control(pids, "-d")
            per_role: dict[str, float] = {}
            for pid in pids:
                r = role(pid)
                per_role[r] = per_role.get(r, 0.0) + totals(outdir, pid) / args.requests
            variant.counts[kind] = per_role
            log(f"{variant.name} {kind}: {per_role}")
    finally:
        proc.stop()


def table(variants: list[Variant], kinds: list[str]) -> str:
    lines = [
        "| variant | kind | worker Ir/req | writer Ir/req | total Ir/req |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in kinds:
        for v in variants:
            c = v.counts.get(kind)
            if c is None:
                lines.append(f"| {v.name} | {kind} | failed | | |")
                continue
            w, s = c.get("worker", 0.0), c.get("writer", 0.0)
            lines.append(f"| {v.name} | {kind} | {w:,.0f} | {s:,.0f} | {w + s:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", action="append", type=Path, help="a checkout (repeat for an A/B)")
    ap.add_argument("--store", default="on,off", help="store settings: on, off or on,off")
    ap.add_argument("--kinds", default=",".join(KINDS), help="request kinds, of " + str(KINDS))
    ap.add_argument("--requests", type=int, default=300, help="counted requests per kind")
    ap.add_argument("--warmup", type=int, default=100, help="uncounted requests per kind first")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--keep", action="store_true", help="keep the callgrind dumps and logs")
    args = ap.parse_args()
    args.kinds = args.kinds.split(",")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind: apt install valgrind", file=sys.stderr)
        return 2
    srcs = [s.resolve() for s in (args.src or [BENCH_DIR.parent])]
    stores = [s == "on" for s in args.store.split(",")]
    variants = [Variant(src, store) for src in srcs for store in stores]
    work = Path(tempfile.mkdtemp(prefix="switchyard-instr-"))
    up_port = free_port()
    upstream = proctree.Managed(
        "upstream",
        [sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(up_port)],
        dict(os.environ),
        work / "upstream.log",
    )
    failed = False
    try:
        wait_until(lambda: http_get(up_port, "/health")[0] == 200, upstream, 10.0, "upstream")
        for variant in variants:
            try:
                measure(variant, args, f"http://127.0.0.1:{up_port}", work)
            except BenchError as err:
                failed = True
                log(f"{variant.name} failed: {err}")
    finally:
        upstream.stop()
    print(table(variants, args.kinds))
    if not failed and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"dumps and logs kept in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
