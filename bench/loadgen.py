"""Load generator: raw asyncio HTTP/1.1 over keep-alive connections, 127.0.0.1 only.

    # open loop: 20 requests/s for 15 s, latency p50/p90/p99
    python bench/loadgen.py --base-url http://127.0.0.1:8321/v1 --prefix openai/ \
        --kinds chat --rate 20 --duration 15
    # closed loop (saturation): 32 connections, each sends again as soon as it has its answer
    python bench/loadgen.py --base-url http://127.0.0.1:8321/v1 --kinds stream --conns 32 \
        --duration 8

Prints one JSON object on stdout. Kinds (``payloads.KINDS``): chat, stream, paced, embed;
several (``--kinds chat,stream,embed``) are sent in turn.

Open loop: request i starts at t0 + (i + j_i)/rate whatever the server does, j_i a
seeded jitter of up to a quarter period either way (the same schedule every run), so a
slow server is charged for the queue it causes (no coordinated omission). A request's
latency runs from its scheduled start, including any wait for a free connection (up to
``--max-conns`` are opened, then requests queue) and any lateness of the generator's
own loop, which is also reported as ``sched_lag`` (large values mean the generator
itself was starved: its latencies then say more about it than about the server).
TTFB of a stream is the arrival of its first ``data:`` event.

Closed loop: ``--conns`` connections, opened before the clock starts; throughput counts
answers completed within ``--duration``. Its latencies are mostly queueing.

An answer counts as an error unless it is a 200 with ``choices`` / ``embedding`` or,
for a stream, ends with ``data: [DONE]`` (``payloads.check_answer``). Every run is
bounded: the schedule is finite and a watchdog ends the run at duration + timeout + 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import payloads
from fake_upstream import install_uvloop
from http1 import build_requests
from loadstats import summarize
from loops import Client, ClosedLoop, OpenLoop

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


# ---------------------------------------------------------------- entry point


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.base_url)
    host, port = url.hostname or "", url.port or 80
    requests = build_requests(args.base_url, args.prefix, args.kinds)
    t0 = time.perf_counter()
    client: Client
    if args.rate is not None:
        client = OpenLoop(host, port, requests, args.max_conns)
        await client.run(args.rate, args.duration, args.timeout, args.prewarm)
        window = time.perf_counter() - t0
        mode = {"mode": "open", "rate": args.rate}
    else:
        client = ClosedLoop(host, port, requests)
        window = await client.run(args.conns, args.duration, args.timeout)
        mode = {"mode": "closed", "conns": args.conns, "late": client.late}
    result = summarize(client.stats)
    return {
        **mode,
        "kinds": args.kinds,
        "duration_s": args.duration,
        "wall_s": round(time.perf_counter() - t0, 3),
        "sent": client.sent,
        **result,
        "rps": round(result["ok"] / window, 1) if window > 0 else None,
        "conns_opened": client.opened,
    }


async def bounded(args: argparse.Namespace) -> dict[str, Any]:
    """The run, cut off by a watchdog should anything hang."""
    limit = args.duration + args.timeout + 10.0
    try:
        return await asyncio.wait_for(run(args), limit)
    except TimeoutError:
        return {"fatal": f"watchdog: the run did not end within {limit:.0f} s"}
    except OSError as err:
        return {"fatal": f"{type(err).__name__}: {err}"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8321/v1")
    ap.add_argument("--prefix", default="", help="prepended to model ids (Switchyard: openai/)")
    ap.add_argument("--kinds", default="chat", help="comma list of " + ",".join(payloads.KINDS))
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="open loop: requests per second")
    mode.add_argument("--conns", type=int, help="closed loop: connections")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    ap.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for answers still out when sending ends",
    )
    ap.add_argument("--max-conns", type=int, default=64, help="open loop: connection cap")
    ap.add_argument("--prewarm", type=int, default=2, help="open loop: connections opened first")
    args = ap.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in args.kinds if k not in payloads.KINDS]
    if unknown or not args.kinds:
        ap.error(f"unknown kinds {unknown}; choose from {','.join(payloads.KINDS)}")
    if urlsplit(args.base_url).hostname not in LOCAL_HOSTS:
        ap.error("only a local target (127.0.0.1, localhost, ::1) may be loaded")
    if not 0 < args.duration <= 24 * 3600 or (args.rate is not None and args.rate <= 0):
        ap.error("--duration and --rate must be positive (duration at most a day)")
    if args.conns is not None and not 0 < args.conns <= 4096:
        ap.error("--conns must be 1..4096")
    return args


def main() -> int:
    args = parse_args()
    loop_name = install_uvloop()
    out = asyncio.run(bounded(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    out["loop"] = loop_name
    print(json.dumps(out), flush=True)
    return 1 if "fatal" in out else 0


if __name__ == "__main__":
    sys.exit(main())
