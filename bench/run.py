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
import json
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import tables
import wrk
from common import BENCH_DIR, BenchError, log
from harness import Harness
from phases import PHASES

DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
STARTUP_TIMEOUT = 120.0


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
    add(
        "--saturate-with",
        choices=("auto", "wrk", "loadgen"),
        default="auto",
        help="saturation load: wrk if installed (auto), or loadgen.py",
    )
    add("--pace-ms", type=float, default=5.0, help="gap between paced stream events (5)")
    add("--workers-list", default="1,2", help="Switchyard variants by --workers (1,2)")
    add("--store-off-too", action="store_true", help="add a 1-worker variant, store off")
    add(
        "--store-rounds",
        type=int,
        default=0,
        metavar="N",
        help="store on vs off side by side, N interleaved rounds per saturation phase",
    )
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
    if args.saturate_with == "auto":
        args.saturate_with = "wrk" if wrk.available() else "loadgen"
    elif args.saturate_with == "wrk" and not wrk.available():
        ap.error("--saturate-with wrk: wrk is not installed (apt install wrk)")
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
    _check_numbers(ap, args)
    return args


def _check_numbers(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.sat, args.fixed, args.rate, args.stream_rate, args.conns) <= 0:
        ap.error("durations, rates and --conns must be positive")
    if args.store_rounds < 0:
        ap.error("--store-rounds takes a number of rounds, 0 for none")
    if any(w < 1 for w in args.workers_list):
        ap.error("--workers-list entries must be >= 1")


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
    except Exception as err:  # a bug of ours: what was measured is still written
        harness.results["error"] = f"{type(err).__name__}: {err}"
        log(f"run failed:\n{traceback.format_exc()}")
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
    tables.annotate(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(tables.render(results), flush=True)
    log(f"wrote {args.json} after {results['meta']['duration_s']} s")
    if interrupted:
        return 130
    return 1 if tables.failures(results) else 0


if __name__ == "__main__":
    sys.exit(main())
