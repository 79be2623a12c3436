"""Saturation phases with wrk, when it is installed.

loadgen.py is Python: at a few thousand requests/s it needs most of a core itself, so on
a 2-core machine it, not Switchyard, sets the saturation figure, and two workers look
no faster than one (bench/NOTES.md, section 8). wrk (C, one thread) needs a tenth of
that, which is why the shared comparison harness uses it too. The result has the same
keys as a closed-loop loadgen.py run, so the tables and checks read either. One
difference: wrk counts any answer under 400 as done without reading it, where loadgen
also checks each body (a stream must end with ``[DONE]``); the smoke test before every
phase checks the bodies once.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import payloads
from common import BenchError, Target

# POST one body; at the end print one JSON line. summary.errors.status counts answers
# with a status of 400 or more; the others are socket errors and timeouts.
SCRIPT = """
local f = assert(io.open(os.getenv("SWITCHYARD_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"mean_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def saturate(target: Target, kind: str, duration: float, conns: int) -> dict[str, Any]:
    """``conns`` connections of ``kind`` requests for ``duration`` seconds, closed loop."""
    url = target.base_url.rstrip("/") + payloads.request_path(kind)
    seconds = max(1, round(duration))
    with tempfile.TemporaryDirectory(prefix="switchyard-wrk-") as scratch:
        script, body = Path(scratch, "post.lua"), Path(scratch, "body.json")
        script.write_text(SCRIPT)
        body.write_bytes(payloads.request_body(kind, target.prefix))
        argv = [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [*argv, "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            env={**os.environ, "SWITCHYARD_BENCH_BODY": str(body)},
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk failed (exit {done.returncode}): {done.stderr[-400:]}")
    raw = json.loads(line.split(" ", 1)[1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return _as_loadgen(raw, kind, conns, round(cpu, 3))


def _as_loadgen(raw: dict[str, Any], kind: str, conns: int, cpu_s: float) -> dict[str, Any]:
    errors = raw["status_errors"] + raw["socket_errors"]
    ok = max(0, raw["requests"] - raw["status_errors"])
    wall = raw["duration_us"] / 1e6
    out: dict[str, Any] = {
        "tool": "wrk",
        "mode": "closed",
        "conns": conns,
        "ok": ok,
        "ok_by_kind": {kind: ok},
        "errors": errors,
        "errors_by_kind": {kind: errors} if errors else {},
        "first_error": None,
        "wall_s": round(wall, 3),
        "rps": round(ok / wall, 1) if wall else 0.0,
        "cpu_s": cpu_s,
    }
    for key in ("p50", "p90", "p99", "mean", "max"):
        out[f"{key}_ms"] = round(raw[f"{key}_us"] / 1000.0, 3)
    return out
