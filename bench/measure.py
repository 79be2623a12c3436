"""What ``run.py`` measures around the load generator, from /proc: CPU counters before
and after a phase and the figures derived from them, a variant's memory, and the peak
RSS per window of a soak."""

from __future__ import annotations

import time
from typing import Any

import proctree
from common import MB


def counters(gateway: proctree.Managed | None, upstream: proctree.Managed) -> dict[str, float]:
    """CPU seconds so far of each party (Switchyard's tree, if any) and of the machine."""
    busy, total = proctree.machine_jiffies()
    return {
        "t": time.monotonic(),
        "gateway": gateway.cpu_seconds() if gateway else 0.0,
        "upstream": upstream.cpu_seconds(),
        "own": proctree.own_cpu_seconds(),
        "busy": busy / proctree.CLOCK_TICKS,
        "total": total / proctree.CLOCK_TICKS,
        "has_gateway": 1.0 if gateway else 0.0,
    }


def phase_numbers(
    load: dict[str, Any], before: dict[str, float], after: dict[str, float]
) -> dict[str, Any]:
    """The load generator's figures plus the CPU each party used meanwhile."""
    out = {k: v for k, v in load.items() if k != "cpu_s"}
    wall = after["t"] - before["t"]
    busy, total = after["busy"] - before["busy"], after["total"] - before["total"]
    out["wall_s"] = round(wall, 2)
    out["loadgen_cpu_s"] = load.get("cpu_s")
    out["upstream_cpu_s"] = round(after["upstream"] - before["upstream"], 3)
    out["machine_busy_pct"] = round(100.0 * busy / total, 1) if total else None
    ours = out["upstream_cpu_s"] + after["own"] - before["own"]
    if before["has_gateway"]:
        cpu = after["gateway"] - before["gateway"]
        out["cpu_s"] = round(cpu, 3)
        out["cpu_ms_per_req"] = round(1000.0 * cpu / load["ok"], 3) if load["ok"] else None
        out["cpu_cores"] = round(cpu / max(load["wall_s"], 0.001), 2)
        ours += cpu
    # Busy time no process of this run accounts for: other tenants of the machine.
    # Approximate: loopback softirq work is charged to whoever happened to run.
    out["other_cpu_s"] = round(max(0.0, busy - ours), 2)
    return out


def memory_summary(track: proctree.RssTrack, result: dict[str, Any]) -> None:
    result["peak_rss_mb"] = round(track.peak_total / MB, 1)
    # A worker with its store writer: what each worker of the server costs.
    result["peak_worker_rss_mb"] = round(max(track.peak_by_worker.values(), default=0) / MB, 1)
    result["processes"] = [
        {"pid": pid, "cmd": track.names.get(pid, ""), "peak_rss_mb": round(size / MB, 1)}
        for pid, size in sorted(track.peak_by_pid.items())
    ]


def rss_windows(timeline: list[tuple[float, int, int]] | None, minutes: float) -> dict[str, Any]:
    """Peak RSS per minute of the soak (per half of it when shorter than 2 minutes);
    growth compares the largest worker's (with its writer) peak in the last window with
    the first."""
    width = 60.0 if minutes >= 2 else minutes * 30.0
    count = max(1, round(minutes * 60.0 / width))
    windows = [{"from_s": i * width, "rss_mb": 0.0, "worker_rss_mb": 0.0} for i in range(count)]
    t0 = timeline[0][0] if timeline else 0.0
    for t, total, largest in timeline or []:
        i = int((t - t0) // width)
        if i < count:  # samples after the schedule ended belong to no window
            w = windows[i]
            w["rss_mb"] = max(w["rss_mb"], round(total / MB, 1))
            w["worker_rss_mb"] = max(w["worker_rss_mb"], round(largest / MB, 1))
    first, last = windows[0]["worker_rss_mb"], windows[-1]["worker_rss_mb"]
    growth = round(100.0 * (last - first) / first, 1) if first and count > 1 else None
    return {"window_s": width, "windows": windows, "growth_pct": growth}
