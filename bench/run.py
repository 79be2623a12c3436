"""Switchyard's benchmark: what the gateway adds over calling the upstream directly.

    python bench/run.py            # ~5 minutes: direct, 1 worker, 2 workers
    python bench/run.py --quick    # ~1 minute smoke run

It starts a fake OpenAI-compatible upstream (``fake_upstream.py``) on 127.0.0.1,
measures it directly, then starts each Switchyard variant in front of it and measures
the same phases through it, with ``loadgen.py`` as the client. Every process runs on
this machine; every load run is bounded. It prints Markdown tables (stdout), progress
(stderr), and writes every number as JSON (``--json``, default
bench/results/latest.json). What each number means: bench/README.md.

Per variant: start (own session, HOME and XDG_DATA_HOME in a temporary directory, the
default config: the OpenAI provider pointed at the fake upstream, plus the inline
embedding model, never loaded), wait for /v1/health and the models,
smoke-test each request kind, warm up, run the phases, then stop it. Switchyard's CPU
(its whole process tree) is read from /proc around each phase; its RSS is sampled
every 0.25 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import payloads
import proctree
import tables

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
MB = 1024 * 1024
PREFIX = "openai/"  # Switchyard's id for the provider the environment configures
STARTUP_TIMEOUT = 120.0


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


class BenchError(Exception):
    """A step failed; the variant is reported as failed and the run goes on."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int  # 0: direct, no Switchyard
    store: bool


@dataclass
class Target:
    """Where the load goes: the upstream itself or a Switchyard in front of it."""

    base_url: str
    prefix: str
    proc: proctree.Managed | None = None


# ---------------------------------------------------------------- small helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def switchyard_env(home: Path, upstream_url: str) -> dict[str, str]:
    """The user's environment without anything that would configure another provider,
    a config file or a proxy, plus the bench's own settings."""
    dropped = ("_API_KEY", "_API_TOKEN", "_BASE_URL", "_PROXY", "_proxy")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWITCHYARD_")
        and not k.endswith(dropped)
        and k not in ("OLLAMA_URL", "VLLM_URL")
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        OPENAI_API_KEY="bench",
        OPENAI_BASE_URL=upstream_url + "/v1",
        HF_HUB_OFFLINE="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# ---------------------------------------------------------------- the harness
class Harness:
    """Owns every process of the run; :meth:`close` stops them all."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.a = args
        self.workdir = workdir
        self.sampler = proctree.Sampler()
        self.procs: list[proctree.Managed] = []
        self.loadgens: set[subprocess.Popen[str]] = set()
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
        for p in list(self.loadgens):
            kill_group(p)
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
        self.sampler.stop()

    # -- the run
    def run(self) -> None:
        self.results["meta"] = self.meta()
        self.sampler.start()
        self.start_upstream()
        self.run_direct()
        for variant in self.variants():
            self.run_switchyard(variant)

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
            self.exercise(target, result)
        except BenchError as err:
            result["error"] = str(err)
            log(f"direct failed: {err}")

    def run_switchyard(self, variant: Variant) -> None:
        log(f"=== {variant.name}")
        result = self.new_result(variant.name, variant.workers, variant.store)
        home = self.workdir / variant.name
        (home / "data").mkdir(parents=True)
        port = free_port()
        argv = self.switchyard_argv(variant, home, port)
        proc = self.start(variant.name, argv, switchyard_env(home, self.upstream_url))
        track = self.sampler.watch(proc)
        try:
            self.serve_variant(
                variant, Target(f"http://127.0.0.1:{port}/v1", PREFIX, proc), track, result
            )
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
        self.exercise(target, result, track)
        if self.a.soak and not self.soaked() and variant.store:
            result["soak"] = self.soak(variant, target, track)

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

    # -- phases
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
            result["phases"][name] = self.measure(name, target)
            time.sleep(self.a.pause)

    def warm_up(self, target: Target, kinds: list[str]) -> None:
        for kind in kinds:
            self.loadgen(target, [kind], duration=self.a.warmup, conns=4)

    def measure(self, name: str, target: Target) -> dict[str, Any]:
        phase = PHASES[name]
        before = self.counters(target)
        if phase.closed:
            load = self.loadgen(target, [phase.kind], duration=self.a.sat, conns=self.a.conns)
        else:
            rate = self.a.stream_rate if phase.stream_rate else self.a.rate
            load = self.loadgen(target, [phase.kind], duration=self.a.fixed, rate=rate)
        out = phase_numbers(load, before, self.counters(target))
        log(
            f"  {name}: {out['rps']} req/s, p50 {out['p50_ms']} p99 {out['p99_ms']} ms"
            + (f", TTFB p50 {out['ttfb_p50_ms']}" if out.get("ttfb_p50_ms") is not None else "")
            + (f", CPU {out['cpu_ms_per_req']} ms/req" if "cpu_ms_per_req" in out else "")
            + f", errors {out['errors']}"
        )
        return out

    def counters(self, target: Target) -> dict[str, float]:
        busy, total = proctree.machine_jiffies()
        assert self.upstream is not None
        return {
            "t": time.monotonic(),
            "gateway": target.proc.cpu_seconds() if target.proc else 0.0,
            "upstream": self.upstream.cpu_seconds(),
            "own": proctree.own_cpu_seconds(),
            "busy": busy / proctree.CLOCK_TICKS,
            "total": total / proctree.CLOCK_TICKS,
            "has_gateway": 1.0 if target.proc else 0.0,
        }

    def loadgen(
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
        return self.run_loadgen(argv, limit=duration + 60.0)

    def run_loadgen(self, argv: list[str], limit: float) -> dict[str, Any]:
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.loadgens.add(p)
        try:
            out, err = p.communicate(timeout=limit)
        except BaseException:  # timeout or Ctrl-C: the load generator must not outlive us
            kill_group(p)
            raise
        finally:
            self.loadgens.discard(p)
        lines = out.strip().splitlines()
        try:
            load: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise BenchError(f"loadgen failed (exit {p.returncode}): {err[-600:]}") from None
        if "fatal" in load:
            raise BenchError(f"loadgen: {load['fatal']}")
        return load

    def soak(self, variant: Variant, target: Target, track: proctree.RssTrack) -> dict[str, Any]:
        minutes, rate = self.a.soak, self.a.soak_rate
        log(f"  soak: {minutes} min at {rate} req/s ({','.join(SOAK_KINDS)})")
        track.timeline = []
        before = self.counters(target)
        load = self.loadgen(target, SOAK_KINDS, duration=minutes * 60.0, rate=rate)
        numbers = phase_numbers(load, before, self.counters(target))
        timeline, track.timeline = track.timeline, None
        soak: dict[str, Any] = {"variant": variant.name, "minutes": minutes, "rate": rate}
        soak.update(rss_windows(timeline, minutes))
        soak["load"] = numbers
        log(f"  soak: RSS per worker growth {soak.get('growth_pct')} %, errors {load['errors']}")
        return soak

    def meta(self) -> dict[str, Any]:
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


# ---------------------------------------------------------------- steps
def kill_group(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:  # while unreaped, its PID (= its group id) cannot be reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(5)


def wait_until(
    check: Callable[[], bool], proc: proctree.Managed, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            code = proc.popen.returncode
            raise BenchError(f"exited ({code}) before it was ready:\n{proc.log_tail()}")
        try:
            if check():
                return
            last = "not ready"
        except (OSError, http.client.HTTPException, ValueError) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.1)
    raise BenchError(f"{what} not ready after {timeout:.0f} s ({last})")


def models_listed(port: int) -> bool:
    status, body = http_get(port, "/v1/models")
    if status != 200:
        return False
    ids = {m.get("id") for m in json.loads(body).get("data", [])}
    return all(PREFIX + m in ids for m in payloads.MODELS)


def wait_ready(port: int, proc: proctree.Managed, timeout: float) -> None:
    """/v1/health answers, and the upstream's models have been discovered."""
    wait_until(
        lambda: http_get(port, "/v1/health")[0] == 200 and models_listed(port),
        proc,
        timeout,
        proc.name,
    )


def smoke_test(target: Target) -> dict[str, str]:
    """One request of each kind: "ok" or what was wrong with the answer."""
    port, base = port_of(target.base_url), urlsplit(target.base_url).path.rstrip("/")
    out = {}
    for kind in payloads.KINDS:
        body = payloads.request_body(kind, target.prefix)
        try:
            status, answer = http_post(port, base + payloads.request_path(kind), body)
        except (OSError, http.client.HTTPException) as err:
            out[kind] = f"{type(err).__name__}: {err}"
            continue
        problem = payloads.check_answer(kind, status, answer)
        out[kind] = "ok" if problem is None else f"{problem}: {answer[:300]!r}"
    return out


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
    result["peak_worker_rss_mb"] = round(max(track.peak_by_pid.values(), default=0) / MB, 1)
    result["processes"] = [
        {"pid": pid, "cmd": track.names.get(pid, ""), "peak_rss_mb": round(size / MB, 1)}
        for pid, size in sorted(track.peak_by_pid.items())
    ]


def rss_windows(timeline: list[tuple[float, int, int]] | None, minutes: float) -> dict[str, Any]:
    """Peak RSS per minute of the soak (per half of it when shorter than 2 minutes);
    growth compares the largest process's peak in the last window with the first."""
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


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke run (~1 min): 1.5 s and 2.5 s phases")
    add(
        "--duration",
        dest="sat",
        type=float,
        metavar="S",
        help="s per saturation phase (8; quick 1.5)",
    )
    add(
        "--fixed-duration",
        dest="fixed",
        type=float,
        metavar="S",
        help="s per fixed-rate phase (15; quick 2.5)",
    )
    add("--rate", type=float, default=20.0, help="fixed rate for chat and embeddings (20/s)")
    add("--stream-rate", type=float, default=10.0, help="fixed rate for streams (10/s)")
    add("--conns", type=int, default=32, help="connections at saturation (32)")
    add("--pace-ms", type=float, default=5.0, help="gap between paced stream events (5)")
    add("--workers-list", default="1,2", help="Switchyard variants by --workers (1,2)")
    add("--store-off-too", action="store_true", help="add a 1-worker variant, store off")
    add("--soak", type=float, default=0.0, metavar="MINUTES", help="sustained load after w1")
    add("--soak-rate", type=float, default=100.0, help="requests/s during --soak (100)")
    add("--phases", default=",".join(PHASES), help="comma list, in order (all)")
    add("--warmup", type=float, help="s of warm-up per request kind (1; quick 0.3)")
    add("--pause", type=float, help="s between phases (1; quick 0.3)")
    add("--json", type=Path, default=DEFAULT_JSON, help="results file (bench/results/latest.json)")
    add("--switchyard", default=f"{shlex.quote(sys.executable)} -m switchyard run", metavar="CMD")
    add("--startup-timeout", type=float, default=STARTUP_TIMEOUT, help="s to wait for ready")
    add("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    add("--report", type=Path, metavar="JSON", help="print the tables of a past run, exit")
    args = ap.parse_args(argv)
    quick = args.quick
    for name, full, short in (("sat", 8.0, 1.5), ("fixed", 15.0, 2.5), ("warmup", 1.0, 0.3)):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.pause is None:
        args.pause = 0.3 if quick else 1.0
    try:
        args.workers_list = [int(w) for w in args.workers_list.split(",") if w.strip()]
    except ValueError:
        ap.error("--workers-list takes numbers, e.g. 1,2")
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in args.phases if p not in PHASES]
    if unknown:
        ap.error(f"unknown phases {unknown}; known: {','.join(PHASES)}")
    if min(args.sat, args.fixed, args.rate, args.stream_rate, args.conns) <= 0:
        ap.error("durations, rates and --conns must be positive")
    if any(w < 1 for w in args.workers_list):
        ap.error("--workers-list entries must be >= 1")
    return args


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "sat_s": args.sat,
        "fixed_s": args.fixed,
        "rate": args.rate,
        "stream_rate": args.stream_rate,
        "conns": args.conns,
        "pace_ms": args.pace_ms,
        "warmup_s": args.warmup,
        "pause_s": args.pause,
        "phases": args.phases,
        "workers_list": args.workers_list,
        "store_off_too": args.store_off_too,
        "soak_min": args.soak,
        "soak_rate": args.soak_rate,
        "switchyard": args.switchyard,
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_all(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The whole run; returns the results and whether it was interrupted."""
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    harness = Harness(args, workdir)
    interrupted = False
    try:
        harness.run()
    except KeyboardInterrupt:
        interrupted = True
        harness.results["error"] = "interrupted"
        log("interrupted: stopping everything this run started")
    except BenchError as err:
        harness.results["error"] = str(err)
        log(f"run failed: {err}")
    finally:
        # Finish the clean-up even if a second Ctrl-C or a SIGTERM comes.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        harness.close()
    results = harness.results
    failed = "error" in results or any(v.get("error") for v in results["variants"])
    if args.keep or failed:
        log(f"logs and stores kept in {workdir}")
        results.setdefault("meta", {})["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, interrupted


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        past = json.loads(args.report.read_text())
        past["targets"] = tables.evaluate_targets(past)
        print(tables.render(past))
        return 0
    # SIGINT too: a shell starts background jobs with it ignored, and `kill -INT` should
    # still stop a run cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    t0 = time.monotonic()
    results, interrupted = run_all(args)
    results.setdefault("meta", {})["duration_s"] = round(time.monotonic() - t0, 1)
    results["targets"] = tables.evaluate_targets(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(tables.render(results), flush=True)
    log(f"wrote {args.json} after {results['meta']['duration_s']} s")
    if interrupted:
        return 130
    return 1 if "error" in results or any(v.get("error") for v in results["variants"]) else 0


if __name__ == "__main__":
    sys.exit(main())
