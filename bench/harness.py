"""The processes of a ``run.py`` run and the order they run in: the fake upstream,
the direct measurement, then each Switchyard variant started, measured through
:class:`phases.PhaseRunner` and stopped. Also the settings and facts the results
file records."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import proctree
import store_rounds
from common import BENCH_DIR, PREFIX, BenchError, Target, Variant, log
from measure import memory_summary
from phases import LoadGens, PhaseRunner
from services import (
    cpu_model,
    free_port,
    git_revision,
    http_get,
    port_of,
    switchyard_env,
    wait_ready,
    wait_until,
)

# Store off = the default config (inline embeddings + OpenAI from the environment),
# spelled out in a file, with the store disabled: the only difference from store on.
STORE_OFF_CONFIG = """\
providers:
  - id: sentence-transformers
    type: sentence-transformers
  - id: openai
    type: openai
    api_key: ${env.OPENAI_API_KEY}
    base_url: ${env.OPENAI_BASE_URL}
store:
  enabled: false
"""


class Harness:
    """Owns every process of the run; :meth:`close` stops them all."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.a = args
        self.workdir = workdir
        self.sampler = proctree.Sampler()
        self.procs: list[proctree.Managed] = []
        self.loadgens = LoadGens()
        self.phases = PhaseRunner(args, self.sampler, self.loadgens)
        self.upstream: proctree.Managed | None = None
        self.upstream_url = ""
        self.results: dict[str, Any] = {"settings": settings_of(args), "variants": []}

    # -- lifecycle
    def start(self, name: str, argv: list[str], env: dict[str, str]) -> proctree.Managed:
        log(f"start {name}: {shlex.join(argv)}")
        proc = proctree.Managed(name, argv, env, self.workdir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop(self, proc: proctree.Managed) -> None:
        self.sampler.unwatch(proc)
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        self.loadgens.kill_all()
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
        self.sampler.stop()

    # -- the run
    def run(self) -> None:
        self.results["meta"] = meta()
        self.sampler.start()
        self.start_upstream()
        self.run_direct()
        for variant in self.variants():
            self.run_switchyard(variant)
        if self.a.store_rounds:
            self.results["store_rounds"] = store_rounds.measure(self, self.a.store_rounds)

    def new_result(self, name: str, workers: int, store: bool | None) -> dict[str, Any]:
        """A variant's record, in the results at once so an interrupted run keeps it."""
        result = {"name": name, "workers": workers, "store": store, "phases": {}}
        self.results["variants"].append(result)
        return result

    def variants(self) -> list[Variant]:
        out = [Variant(f"switchyard-w{w}", w, store=True) for w in self.a.workers_list]
        if self.a.store_off_too:
            out.append(Variant("switchyard-w1-store-off", 1, store=False))
        return out

    def start_upstream(self) -> None:
        port = free_port()
        argv = [sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(port)]
        argv += ["--pace-ms", str(self.a.pace_ms)]
        self.upstream = self.start("upstream", argv, dict(os.environ))
        self.phases.upstream = self.upstream
        self.upstream_url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_get(port, "/health")[0] == 200, self.upstream, 10.0, "upstream")
        except BenchError as err:
            raise BenchError(f"fake upstream: {err}") from None

    def run_direct(self) -> None:
        log("=== direct (load generator -> fake upstream)")
        result = self.new_result("direct", 0, None)
        target = Target(self.upstream_url + "/v1", "")
        try:
            self.phases.exercise(target, result)
        except BenchError as err:
            result["error"] = str(err)
            log(f"direct failed: {err}")

    def launch(self, variant: Variant) -> Target:
        """Start ``variant`` in a home of its own; the target has its process."""
        home = self.workdir / variant.name
        launched = 1
        while home.exists():  # launched again (store rounds): a fresh home, empty store
            launched += 1
            home = self.workdir / f"{variant.name}-{launched}"
        (home / "data").mkdir(parents=True)
        port = free_port()
        argv = self.switchyard_argv(variant, home, port)
        proc = self.start(variant.name, argv, switchyard_env(home, self.upstream_url))
        return Target(f"http://127.0.0.1:{port}/v1", PREFIX, proc)

    def run_switchyard(self, variant: Variant) -> None:
        log(f"=== {variant.name}")
        result = self.new_result(variant.name, variant.workers, variant.store)
        try:
            target = self.launch(variant)
        except OSError as err:  # a --switchyard command that does not exist, say
            result["error"] = f"cannot start: {err}"
            log(f"{variant.name} failed: {result['error']}")
            return
        proc = target.proc
        assert proc is not None
        track = self.sampler.watch(proc)
        try:
            self.serve_variant(variant, target, track, result)
        except BenchError as err:
            result["error"] = str(err)
            result["log_tail"] = proc.log_tail()
            log(f"{variant.name} failed: {err}\n{result['log_tail']}")
        finally:
            result["cpu_s_total"] = round(proc.cpu_seconds(), 2)
            self.stop(proc)
            memory_summary(track, result)

    def serve_variant(
        self, variant: Variant, target: Target, track: proctree.RssTrack, result: dict[str, Any]
    ) -> None:
        assert target.proc is not None
        port = port_of(target.base_url)
        t0 = time.monotonic()
        wait_ready(port, target.proc, self.a.startup_timeout)
        result["startup_s"] = round(time.monotonic() - t0, 2)
        with contextlib.suppress(OSError, ValueError):
            result["version"] = json.loads(http_get(port, "/v1/version")[1]).get("version")
        log(f"{variant.name} ready in {result['startup_s']} s")
        self.phases.exercise(target, result, track)
        if self.a.soak and not self.soaked() and variant.store:
            result["soak"] = self.phases.soak(variant, target, track)

    def soaked(self) -> bool:
        return any(v.get("soak") for v in self.results["variants"])

    def switchyard_argv(self, variant: Variant, home: Path, port: int) -> list[str]:
        argv = shlex.split(self.a.switchyard)
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(variant.workers)]
        if not variant.store:
            config = home / "store-off.yaml"
            config.write_text(STORE_OFF_CONFIG)
            argv += ["--config", str(config)]
        return argv


# ---------------------------------------------------------------- the results' header
def meta() -> dict[str, Any]:
    return {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "git": git_revision(),
    }


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "sat_s": args.sat,
        "fixed_s": args.fixed,
        "rate": args.rate,
        "stream_rate": args.stream_rate,
        "conns": args.conns,
        "saturate_with": args.saturate_with,
        "pace_ms": args.pace_ms,
        "warmup_s": args.warmup,
        "pause_s": args.pause,
        "phases": args.phases,
        "workers_list": args.workers_list,
        "store_off_too": args.store_off_too,
        "store_rounds": args.store_rounds,
        "soak_min": args.soak,
        "soak_rate": args.soak_rate,
        "switchyard": args.switchyard,
    }
