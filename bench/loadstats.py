"""The load generator's statistics: what each answer adds, and the JSON summary
(latency, TTFB and scheduling-lag percentiles in ms, errors by kind)."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any

import payloads
from http1 import Request, ResponseReader


@dataclass
class Stats:
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_error: str | None = None
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)

    def record(self, req: Request, t_start: float, t_end: float, reader: ResponseReader) -> None:
        body = bytes(reader.body)
        problem = payloads.check_answer(req.kind, reader.status, body)
        if problem is not None:
            self.error(problem, f"{req.kind}: {problem}: {body[:300]!r}")
            return
        self.by_kind[req.kind] += 1
        self.latency.append(t_end - t_start)
        if req.stream:
            self.ttfb.append((reader.t_first or t_end) - t_start)
            self.events.append(body.count(b"data:"))

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if self.first_error is None:
            self.first_error = detail[:400]


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def summarize(stats: Stats) -> dict[str, Any]:
    lat, ttfb, lag = sorted(stats.latency), sorted(stats.ttfb), sorted(stats.lag)
    out: dict[str, Any] = {
        "ok": len(lat),
        "ok_by_kind": dict(stats.by_kind),
        "errors": sum(stats.errors.values()),
        "errors_by_kind": dict(stats.errors),
        "first_error": stats.first_error,
        "mean_ms": _ms(sum(lat) / len(lat)) if lat else None,
        "max_ms": _ms(lat[-1]) if lat else None,
    }
    for p in (50, 90, 99):
        out[f"p{p}_ms"] = _ms(percentile(lat, p))
    for p in (50, 90, 99):
        out[f"ttfb_p{p}_ms"] = _ms(percentile(ttfb, p))
    out["events_mean"] = round(sum(stats.events) / len(stats.events), 2) if stats.events else None
    out["sched_lag_p50_ms"] = _ms(percentile(lag, 50))
    out["sched_lag_p99_ms"] = _ms(percentile(lag, 99))
    out["sched_lag_max_ms"] = _ms(lag[-1]) if lag else None
    return out
