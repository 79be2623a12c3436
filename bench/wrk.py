"""Saturation phases with wrk, when it is installed.

loadgen.py is Python: at a few thousand requests/s it needs most of a core itself, so on
a 2-core machine it, not Switchyard, sets the saturation figure, and two workers look
no faster than one (bench/NOTES.md, section 8). wrk (C, one thread) needs a tenth of
that, which is why the shared comparison harness uses it too. The result has the same
keys as a closed-loop loadgen.py run, so the tables and checks read either. As
loadgen does, a stream whose body does not end with ``data: [DONE]`` (Switchyard ends
a failed stream with an error event, under a 200) counts as an error; other answers
under 400 are not read. wrk takes whole seconds: a phase lasts its duration rounded up.
"""

from __future__ import annotations

import json
import math
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
# with a status of 400 or more; the others are socket errors and timeouts. For streams
# (SWITCHYARD_BENCH_STREAM=1) each thread also counts bodies that did not end with
# [DONE]; only then is response() defined, as wrk reads bodies only for it.
SCRIPT = """
local f = assert(io.open(os.getenv("SWITCHYARD_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"

local threads = {}
setup = function(thread) table.insert(threads, thread) end
unfinished = 0
if os.getenv("SWITCHYARD_BENCH_STREAM") == "1" then
  response = function(status, headers, body)
    if status < 400 and not string.find(string.sub(body, -32), "data: [DONE]", 1, true) then
      unfinished = unfinished + 1
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local cut = 0
  for _, t in ipairs(threads) do cut = cut + t:get("unfinished") end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "unfinished": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "mean_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    cut, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def saturate(target: Target, kind: str, duration: float, conns: int) -> dict[str, Any]:
    """``conns`` connections of ``kind`` requests for ``duration`` seconds, closed loop."""
    url = target.base_url.rstrip("/") + payloads.request_path(kind)
    seconds = max(1, math.ceil(duration - 1e-9))
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
            env={
                **os.environ,
                "SWITCHYARD_BENCH_BODY": str(body),
                "SWITCHYARD_BENCH_STREAM": "1" if kind in payloads.STREAM_KINDS else "0",
            },
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
    errors = raw["status_errors"] + raw["socket_errors"] + raw["unfinished"]
    ok = max(0, raw["requests"] - raw["status_errors"] - raw["unfinished"])
    wall = raw["duration_us"] / 1e6
    out: dict[str, Any] = {
        "tool": "wrk",
        "mode": "closed",
        "conns": conns,
        "ok": ok,
        "ok_by_kind": {kind: ok},
        "errors": errors,
        "errors_by_kind": {kind: errors} if errors else {},
        "first_error": "a stream without data: [DONE]" if raw["unfinished"] else None,
        "wall_s": round(wall, 3),
        "rps": round(ok / wall, 1) if wall else 0.0,
        "cpu_s": cpu_s,
    }
    for key in ("p50", "p90", "p99", "mean", "max"):
        out[f"{key}_ms"] = round(raw[f"{key}_us"] / 1000.0, 3)
    return out
