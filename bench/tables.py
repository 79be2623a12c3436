"""The benchmark's report: Markdown tables and the issue's targets, from the results dict.

Everything here reads the JSON that ``run.py`` writes, so a past run can be printed
again (``python bench/run.py --report bench/results/latest.json``). "Added" figures
subtract the direct run's value for the same phase; throughput is shown as a fraction
of direct, which on one machine is mostly a measure of the harness (see README.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Result = dict[str, Any]
FIXED_PHASES = ("fixed_chat", "fixed_stream", "fixed_paced", "fixed_embed")
SAT_PHASES = ("sat_chat", "sat_stream", "sat_embed")
STREAM_PHASES = frozenset({"fixed_stream", "fixed_paced", "sat_stream"})
NOISE_PCT = 5.0  # share of the machine used by others above which the report warns


def fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:+,.0f}" if sign else f"{value:,.0f}"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return [title, "", _row(header), "|" + "---|" * len(header), *(_row(r) for r in rows), ""]


def phase_of(variant: Result, phase: str) -> Result | None:
    """A phase that was measured (not skipped, not failed), or None."""
    found: Result | None = variant.get("phases", {}).get(phase)
    return found if found and "skipped" not in found and "error" not in found else None


def direct_of(results: Result) -> Result | None:
    return next((v for v in results["variants"] if v["name"] == "direct"), None)


def added(results: Result, variant: Result, phase: str, key: str) -> float | None:
    """``key`` of ``variant`` minus the direct run's, for one phase."""
    direct = direct_of(results)
    if direct is None or variant is direct:
        return None
    mine, base = phase_of(variant, phase), phase_of(direct, phase)
    if mine is None or base is None or mine.get(key) is None or base.get(key) is None:
        return None
    return float(mine[key]) - float(base[key])


# ---------------------------------------------------------------- tables
def _fixed_row(results: Result, v: Result, phase: str, r: Result) -> list[str]:
    def plus(key: str) -> str:
        return fmt(added(results, v, phase, key), sign=True)

    ttfb = ["-"] * 4
    if phase in STREAM_PHASES:
        ttfb = [fmt(r.get("ttfb_p50_ms")), fmt(r.get("ttfb_p99_ms"))]
        ttfb += [plus("ttfb_p50_ms"), plus("ttfb_p99_ms")]
    keys = ("p50_ms", "p90_ms", "p99_ms")
    return [
        phase,
        v["name"],
        fmt(r.get("rate"), 0),
        *(fmt(r.get(k)) for k in keys),
        *(plus(k) for k in keys),
        *ttfb,
        fmt(r.get("cpu_ms_per_req"), 3),
        str(r.get("errors", "-")),
    ]


def fixed_table(results: Result) -> list[str]:
    header = ["phase", "variant", "rate/s", "p50", "p90", "p99", "+p50", "+p90", "+p99"]
    header += ["TTFB p50", "TTFB p99", "+TTFB p50", "+TTFB p99", "CPU ms/req", "errors"]
    rows = []
    for phase in FIXED_PHASES:
        for v in results["variants"]:
            r = phase_of(v, phase)
            if r is not None:
                rows.append(_fixed_row(results, v, phase, r))
    title = "### Fixed rate (open loop): latency in ms; + = added over direct"
    return _table(title, header, rows)


def sat_table(results: Result) -> list[str]:
    header = ["phase", "variant", "req/s", "x direct", "p50 ms", "p99 ms", "CPU ms/req"]
    header += ["CPU cores busy", "errors"]
    direct = direct_of(results)
    rows = []
    for phase in SAT_PHASES:
        base = phase_of(direct, phase) if direct else None
        for v in results["variants"]:
            r = phase_of(v, phase)
            if r is None:
                continue
            ratio = r["rps"] / base["rps"] if base and base.get("rps") and v is not direct else None
            rows.append(
                [
                    phase,
                    v["name"],
                    fmt(r.get("rps"), 0),
                    fmt(ratio, 3),
                    fmt(r.get("p50_ms")),
                    fmt(r.get("p99_ms")),
                    fmt(r.get("cpu_ms_per_req"), 3),
                    fmt(r.get("cpu_cores")),
                    str(r.get("errors", "-")),
                ]
            )
    settings = results["settings"]
    tool = settings.get("saturate_with", "loadgen")
    title = f"### Saturation (closed loop, {settings['conns']} connections, {tool})"
    return _table(title, header, rows)


def memory_table(results: Result) -> list[str]:
    header = ["variant", "processes", "startup s", "idle RSS MB", "peak RSS MB (all)"]
    header += ["peak RSS MB per worker", "CPU s (whole run)"]
    rows = [
        [
            v["name"],
            str(len(v.get("processes", []))),
            fmt(v.get("startup_s"), 1),
            fmt(v.get("idle_rss_mb"), 1),
            fmt(v.get("peak_rss_mb"), 1),
            fmt(v.get("peak_worker_rss_mb"), 1),
            fmt(v.get("cpu_s_total"), 1),
        ]
        for v in results["variants"]
        if v["name"] != "direct"
    ]
    return _table("### Switchyard's processes", header, rows)


def _harness_row(name: str, phases: list[Result]) -> list[str]:
    def total(key: str) -> str:
        return fmt(sum(p.get(key) or 0.0 for p in phases), 1)

    def peak(key: str, digits: int) -> str:
        values = [p[key] for p in phases if p.get(key) is not None]
        return fmt(max(values) if values else None, digits)

    return [
        name,
        peak("machine_busy_pct", 0),
        total("loadgen_cpu_s"),
        total("upstream_cpu_s"),
        total("other_cpu_s"),
        peak("sched_lag_p99_ms", 2),
    ]


def harness_table(results: Result) -> list[str]:
    header = ["variant", "max machine busy %", "loadgen CPU s", "upstream CPU s"]
    header += ["other processes CPU s", "max sched lag p99 ms"]
    rows = []
    for v in results["variants"]:
        phases = [p for name in v.get("phases", {}) if (p := phase_of(v, name)) is not None]
        if phases:
            rows.append(_harness_row(v["name"], phases))
    title = "### Harness (shares the cores; other processes = noise from outside the run)"
    return _table(title, header, rows)


def soak_table(results: Result) -> list[str]:
    soak = next((v["soak"] for v in results["variants"] if v.get("soak")), None)
    if soak is None or "windows" not in soak:
        return []
    header = ["window", "from s", "peak RSS MB (all)", "peak RSS MB largest process"]
    rows = [
        [str(i + 1), fmt(w["from_s"], 0), fmt(w["rss_mb"], 1), fmt(w["worker_rss_mb"], 1)]
        for i, w in enumerate(soak["windows"])
    ]
    load = soak.get("load", {})
    title = (
        f"### Soak: {soak['variant']}, {fmt(soak['minutes'], 1)} min at {fmt(soak['rate'], 0)}"
        f" req/s (chat, stream, embeddings in turn); {load.get('ok', 0)} ok,"
        f" {load.get('errors', 0)} errors"
    )
    return _table(title, header, rows)


# ---------------------------------------------------------------- targets
def _measured(results: Result) -> list[Result]:
    """The Switchyard variants (one that failed midway is judged on what it measured;
    what it did not is a failure of its own, under Problems)."""
    return [v for v in results["variants"] if v["name"] != "direct"]


def _variant(results: Result, test: Callable[[Result], bool]) -> Result | None:
    return next((v for v in _measured(results) if test(v)), None)


def _target(
    name: str, value: float | None, limit: str, ok: bool | None, unit: str, trouble: str = ""
) -> Result:
    """A target's row. ``trouble`` (errors, a phase that failed) makes it a failure,
    whatever its value: percentiles of the answers that succeeded say nothing of the
    ones that did not."""
    shown = None if value is None else round(value, 3)
    out = {"target": name, "value": shown, "unit": unit, "limit": limit, "pass": ok}
    if trouble:
        out["pass"], out["note"] = False, trouble
    return out


def _trouble(results: Result, variants: list[Result | None], phase: str) -> str:
    """What went wrong in ``phase`` of these variants and of direct, if anything."""
    said = []
    for v in [*variants, direct_of(results)]:
        if v is None:
            continue
        found = v.get("phases", {}).get(phase)
        if found is None:
            if v.get("error") and phase in results["settings"].get("phases", ()):
                said.append(f"{v['name']} failed before {phase}")
        elif "error" in found:
            said.append(f"{v['name']} {phase} failed")
        elif found.get("errors"):
            said.append(f"{found['errors']} errors in {v['name']} {phase}")
    return "; ".join(said)


def _latency_targets(results: Result, base: Result) -> list[Result]:
    s = results["settings"]
    checks = [
        (f"chat @{fmt(s['rate'], 0)}/s: added p50", "fixed_chat", "p50_ms", 1.0),
        (f"chat @{fmt(s['rate'], 0)}/s: added p99", "fixed_chat", "p99_ms", 3.0),
        (
            f"stream @{fmt(s['stream_rate'], 0)}/s: added TTFB p50",
            "fixed_stream",
            "ttfb_p50_ms",
            1.0,
        ),
        (f"embeddings @{fmt(s['rate'], 0)}/s: added p50", "fixed_embed", "p50_ms", 1.5),
    ]
    out = []
    for name, phase, key, limit in checks:
        value = added(results, base, phase, key)
        ok = None if value is None else value <= limit
        trouble = _trouble(results, [base], phase)
        out.append(_target(name, value, f"<= {limit:g} ms", ok, "ms", trouble))
    paced = added(results, base, "fixed_paced", "p50_ms")
    ok = None if paced is None else abs(paced) <= 2.0
    trouble = _trouble(results, [base], "fixed_paced")
    out.append(
        _target("paced stream: total p50 vs direct", paced, "within 2 ms", ok, "ms", trouble)
    )
    return out


def _throughput_ratio(one: Result | None, other: Result | None, phase: str) -> float | None:
    a = phase_of(one, phase) if one else None
    b = phase_of(other, phase) if other else None
    if not a or not b or not a.get("rps") or b.get("rps") is None:
        return None
    return float(b["rps"]) / float(a["rps"])


def _scaling_targets(results: Result, base: Result) -> list[Result]:
    w2 = _variant(results, lambda v: v["workers"] == 2 and v["store"])
    ratio = _throughput_ratio(base, w2, "sat_chat")
    ok = None if ratio is None else ratio >= 1.7
    trouble = _trouble(results, [base, w2], "sat_chat") if w2 else ""
    out = [_target("--workers 2: chat req/s vs 1 worker", ratio, ">= 1.7x", ok, "x", trouble)]
    off = _variant(results, lambda v: v["workers"] == 1 and not v["store"])
    rounds = results.get("store_rounds") or {}
    for phase in ("sat_chat", "sat_stream"):
        kept = _throughput_ratio(off, base, phase)  # store on / store off
        cost = None if kept is None else (1.0 - kept) * 100.0
        # Interleaved rounds, when run, are the steadier measure (store_rounds.py).
        in_rounds = rounds.get(phase, {})
        cost = in_rounds.get("cost_pct", cost)
        ok = None if cost is None else cost <= 10.0
        if "cost_pct" in in_rounds:
            trouble = f"{in_rounds['errors']} errors in the rounds" if in_rounds["errors"] else ""
        else:
            trouble = _trouble(results, [base, off], phase) if off else ""
        label = phase.removeprefix("sat_")
        name = f"store on vs off: {label} req/s cost"
        out.append(_target(name, cost, "<= 10 %", ok, "%", trouble))
    return out


def store_rounds_table(results: Result) -> list[str]:
    """``--store-rounds``: each phase's rounds, store on against off, side by side."""
    rounds = results.get("store_rounds") or {}
    rows = []
    for phase, r in rounds.items():
        if not isinstance(r, dict):
            continue
        med = {k: statistics.median(r[k]) if r[k] else None for k in _ROUND_KEYS}
        rows.append(
            [phase, str(len(r["rps_on"]))]
            + [fmt(med[k], 0 if k.startswith("rps") else 3) for k in _ROUND_KEYS]
            + [f"{fmt(min(r['rps_on']), 0)}-{fmt(max(r['rps_on']), 0)}", fmt(r["cost_pct"], 1)]
            + [str(r["errors"])]
        )
    header = ["phase", "rounds", "req/s on", "req/s off", "CPU ms/req on", "CPU ms/req off"]
    header += ["req/s on, range", "cost %", "errors"]
    title = "### Store on vs off, interleaved rounds (medians)"
    if "error" in rounds:
        return [title, "", f"failed: {rounds['error']}", ""]
    return _table(title, header, rows)


_ROUND_KEYS = ("rps_on", "rps_off", "cpu_ms_on", "cpu_ms_off")


def _memory_targets(results: Result) -> list[Result]:
    stored = [v for v in _measured(results) if v["store"]]
    sizes = [v["peak_worker_rss_mb"] for v in stored if v.get("peak_worker_rss_mb")]
    peak = max(sizes) if sizes else None
    ok = None if peak is None else peak < 200.0
    out = [_target("RSS per worker, store on (peak)", peak, "< 200 MB", ok, "MB")]
    soak = next((v["soak"] for v in results["variants"] if v.get("soak")), None)
    growth = soak.get("growth_pct") if soak else None
    ok = None if growth is None else growth <= 10.0
    errors = (soak or {}).get("load", {}).get("errors")
    trouble = f"{errors} errors in the soak" if errors else ""
    name = "RSS per worker flat under --soak"
    out.append(_target(name, growth, "<= 10 % growth", ok, "%", trouble))
    return out


def evaluate_targets(results: Result) -> list[Result]:
    """The issue's targets, from this run; ``pass`` is None when not measured."""
    base = _variant(results, lambda v: v["workers"] == 1 and v["store"])
    if base is None:
        return []
    return (
        _latency_targets(results, base) + _scaling_targets(results, base) + _memory_targets(results)
    )


def targets_table(results: Result) -> list[str]:
    rows = []
    for t in results.get("targets", []):
        mark = {True: "PASS", False: "FAIL", None: "not measured"}[t["pass"]]
        if t.get("note"):
            mark += f" ({t['note']})"
        value = "-" if t["value"] is None else fmt(t["value"], 2, sign=t["unit"] == "ms")
        unit = "" if t["value"] is None else f" {t['unit']}".replace(" x", "x")
        rows.append([t["target"], value + unit, t["limit"], mark])
    if not rows:
        return []
    note = "### Targets (issue 5), from this run's 1-worker store-on variant vs direct"
    return _table(note, ["target", "measured", "limit", "result"], rows)


def noise_warning(results: Result) -> list[str]:
    """A line when processes outside the run took a noticeable share of the machine."""
    phases = [p for v in results["variants"] for p in v.get("phases", {}).values()]
    other = sum(p.get("other_cpu_s") or 0.0 for p in phases)
    wall = sum(p.get("wall_s") or 0.0 for p in phases)
    cpus = results.get("meta", {}).get("cpus") or 1
    share = 100.0 * other / (wall * cpus) if wall else 0.0
    if share < NOISE_PCT:
        return []
    return [
        f"- noise: processes outside this run used {other:.0f} CPU-s during the phases"
        f" ({share:.0f} % of the machine); throughput and tail latencies are disturbed,"
        " run again on a quiet machine before reading much into them"
    ]


def failures(results: Result) -> list[str]:
    """What failed in this run: the run, a variant, a phase, answers that were errors.
    Any of them makes ``run.py`` exit with 1."""
    found = [f"run: {results['error']}"] if results.get("error") else []
    for v in results["variants"]:
        if v.get("error"):
            found.append(f"{v['name']}: " + v["error"].replace("\n", "\n    "))
        for name, p in v.get("phases", {}).items():
            if "error" in p:
                found.append(f"{v['name']} {name}: failed ({p['error']})")
            elif p.get("errors"):
                first = f"; first: {p['first_error']}" if p.get("first_error") else ""
                found.append(f"{v['name']} {name}: {p['errors']} errors{first}")
    soak = next((v["soak"] for v in results["variants"] if v.get("soak")), None)
    if soak and soak.get("load", {}).get("errors"):
        found.append(f"soak: {soak['load']['errors']} errors")
    return found


def annotate(results: Result) -> None:
    """Write into each measured phase what the tables derive from it (added over
    direct, x direct), so that the JSON holds every figure the tables show."""
    direct = direct_of(results)
    for v in results["variants"]:
        if v is direct:
            continue
        for phase in v.get("phases", {}):
            mine = phase_of(v, phase)
            if mine is None:
                continue
            for key in ("p50_ms", "p90_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p99_ms"):
                value = added(results, v, phase, key)
                if value is not None:
                    mine[f"added_{key}"] = round(value, 3)
            base = phase_of(direct, phase) if direct else None
            if phase in SAT_PHASES and base and base.get("rps") and mine.get("rps") is not None:
                mine["x_direct"] = round(mine["rps"] / base["rps"], 3)


def render(results: Result) -> str:
    s = results["settings"]
    intro = (
        f"Switchyard bench: saturation = closed loop, {s['conns']} connections,"
        f" {fmt(s['sat_s'], 1)} s; fixed rate = open loop, {fmt(s['fixed_s'], 1)} s at"
        f" {fmt(s['rate'], 0)} req/s (chat, embeddings) and {fmt(s['stream_rate'], 0)}"
        f" streams/s (paced: upstream events {fmt(s['pace_ms'], 0)} ms apart)."
        " Latencies in ms. Compare rows of one run only."
    )
    lines = [intro, ""]
    for part in (
        fixed_table,
        sat_table,
        store_rounds_table,
        memory_table,
        soak_table,
        harness_table,
        targets_table,
    ):
        lines += part(results)
    problems = [f"- {line}" for line in failures(results)]
    problems += noise_warning(results)
    problems += [
        f"- {v['name']} {name}: skipped ({p['skipped']})"
        for v in results["variants"]
        for name, p in v.get("phases", {}).items()
        if "skipped" in p
    ]
    if problems:
        lines += ["Problems and caveats:", *problems, ""]
    return "\n".join(lines)
