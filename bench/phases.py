"""The phases ``run.py`` puts each target through, and the load generator runs they
are made of: smoke test, warm-up, every phase with the CPU each party used around it,
and the soak. Each load run is ``loadgen.py`` in its own session, with a time limit."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import proctree
import wrk
from common import BENCH_DIR, MB, BenchError, Target, Variant, log
from measure import counters, phase_numbers, rss_windows
from services import kill_group, smoke_test


@dataclass(frozen=True)
class Phase:
    kind: str  # a payloads.KINDS entry
    closed: bool  # closed loop (saturation) or open loop (fixed rate)
    stream_rate: bool = False  # open loop at --stream-rate instead of --rate


PHASES = {
    "sat_chat": Phase("chat", closed=True),
    "fixed_chat": Phase("chat", closed=False),
    "sat_stream": Phase("stream", closed=True),
    "fixed_stream": Phase("stream", closed=False, stream_rate=True),
    "fixed_paced": Phase("paced", closed=False, stream_rate=True),
    "sat_embed": Phase("embed", closed=True),
    "fixed_embed": Phase("embed", closed=False),
}
SOAK_KINDS = ["chat", "stream", "embed"]


class LoadGens:
    """Runs ``loadgen.py``; :meth:`kill_all` stops any still running."""

    def __init__(self) -> None:
        self.running: set[subprocess.Popen[str]] = set()

    def run(
        self,
        target: Target,
        kinds: list[str],
        *,
        duration: float,
        rate: float | None = None,
        conns: int | None = None,
    ) -> dict[str, Any]:
        argv = [sys.executable, str(BENCH_DIR / "loadgen.py"), "--base-url", target.base_url]
        argv += ["--prefix", target.prefix, "--kinds", ",".join(kinds)]
        argv += ["--duration", str(duration), "--timeout", "10" if conns else "30"]
        argv += ["--conns", str(conns)] if conns else ["--rate", str(rate)]
        return self.run_argv(argv, limit=duration + 60.0)

    def run_argv(self, argv: list[str], limit: float) -> dict[str, Any]:
        try:
            p = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as err:
            raise BenchError(f"cannot start the load generator: {err}") from err
        self.running.add(p)
        try:
            out, err = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(p)
            raise BenchError(f"the load generator did not finish within {limit:.0f} s") from None
        except BaseException:  # Ctrl-C: the load generator must not outlive us
            kill_group(p)
            raise
        finally:
            self.running.discard(p)
        lines = out.strip().splitlines()
        try:
            load: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise BenchError(f"loadgen failed (exit {p.returncode}): {err[-600:]}") from None
        if "fatal" in load:
            raise BenchError(f"loadgen: {load['fatal']}")
        return load

    def kill_all(self) -> None:
        for p in list(self.running):
            kill_group(p)


class PhaseRunner:
    """Puts one target after another through the phases the command line chose."""

    def __init__(
        self, args: argparse.Namespace, sampler: proctree.Sampler, loadgens: LoadGens
    ) -> None:
        self.a = args
        self.sampler = sampler
        self.loadgens = loadgens
        self.upstream: proctree.Managed | None = None  # set once the upstream runs

    def exercise(
        self, target: Target, result: dict[str, Any], track: proctree.RssTrack | None = None
    ) -> None:
        """Smoke test, warm up, then every phase (those of a failed kind are skipped)."""
        smoke = smoke_test(target)
        result["smoke"] = smoke
        bad = {kind: why for kind, why in smoke.items() if why != "ok"}
        if len(bad) == len(smoke):
            raise BenchError(f"every smoke test failed: {bad}")
        self.warm_up(target, [k for k in ("chat", "stream", "embed") if k not in bad])
        if track is not None and target.proc is not None:
            self.sampler.sample(target.proc, track)
            result["idle_rss_mb"] = round(track.peak_total / MB, 1)
        for name in self.a.phases:
            kind = PHASES[name].kind
            if kind in bad:
                result["phases"][name] = {"skipped": f"smoke test failed: {bad[kind]}"}
                continue
            try:
                result["phases"][name] = self.measure(name, target)
            except BenchError as err:  # the other phases still run, and are reported
                result["phases"][name] = {"error": str(err)}
                log(f"  {name} failed: {err}")
            time.sleep(self.a.pause)

    def warm_up(self, target: Target, kinds: list[str]) -> None:
        for kind in kinds:
            self.loadgens.run(target, [kind], duration=self.a.warmup, conns=4)

    def measure(self, name: str, target: Target) -> dict[str, Any]:
        phase = PHASES[name]
        before = self.counters(target)
        if phase.closed and self.a.saturate_with == "wrk":
            load = wrk.saturate(target, phase.kind, self.a.sat, self.a.conns)
        elif phase.closed:
            load = self.loadgens.run(target, [phase.kind], duration=self.a.sat, conns=self.a.conns)
        else:
            rate = self.a.stream_rate if phase.stream_rate else self.a.rate
            load = self.loadgens.run(target, [phase.kind], duration=self.a.fixed, rate=rate)
        out = phase_numbers(load, before, self.counters(target))
        log(
            f"  {name}: {out['rps']} req/s, p50 {out['p50_ms']} p99 {out['p99_ms']} ms"
            + (f", TTFB p50 {out['ttfb_p50_ms']}" if out.get("ttfb_p50_ms") is not None else "")
            + (f", CPU {out['cpu_ms_per_req']} ms/req" if "cpu_ms_per_req" in out else "")
            + f", errors {out['errors']}"
        )
        return out

    def counters(self, target: Target) -> dict[str, float]:
        assert self.upstream is not None
        return counters(target.proc, self.upstream)

    def soak(self, variant: Variant, target: Target, track: proctree.RssTrack) -> dict[str, Any]:
        minutes, rate = self.a.soak, self.a.soak_rate
        log(f"  soak: {minutes} min at {rate} req/s ({','.join(SOAK_KINDS)})")
        track.timeline = []
        before = self.counters(target)
        load = self.loadgens.run(target, SOAK_KINDS, duration=minutes * 60.0, rate=rate)
        numbers = phase_numbers(load, before, self.counters(target))
        timeline, track.timeline = track.timeline, None
        soak: dict[str, Any] = {"variant": variant.name, "minutes": minutes, "rate": rate}
        soak.update(rss_windows(timeline, minutes))
        soak["load"] = numbers
        log(f"  soak: RSS per worker growth {soak.get('growth_pct')} %, errors {load['errors']}")
        return soak
