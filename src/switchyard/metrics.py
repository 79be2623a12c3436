"""Prometheus metrics, served at GET /metrics.

Counters live here so that every part (store, upstream, server) counts into the
same names. With several workers a scrape reaches one of them at random, so the
workers share their values through prometheus_client's multiprocess mode: ``switchyard
run --workers N`` gives them a directory in ``PROMETHEUS_MULTIPROC_DIR`` (or uses the
one set), every worker writes its values there, and the one scraped sums them all. A
gauge read from a function (``live_gauge``) is published there every
``PUBLISH_INTERVAL_S`` and at each scrape, since the others' functions cannot be called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Set but empty, prometheus_client would take it as a directory, the current one, and
# write its files there; read as unset, before prometheus_client is imported.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]
# Set to a folder that does not exist, every counter below would fail to open its file,
# and every command with it, ``--version`` included: it is made, or if it cannot be,
# it is ignored (as if unset), which is said on stderr.
if _wanted := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    try:
        os.makedirs(_wanted, exist_ok=True)
    except OSError as _err:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        print(
            f"switchyard: warning: PROMETHEUS_MULTIPROC_DIR={_wanted} cannot be used "
            f"({_err.strerror}); ignoring it",
            file=sys.stderr,
        )

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Read once, as prometheus_client did when it was imported to choose where values live.
SHARED = bool(os.environ.get(MULTIPROCESS_DIR))
PUBLISH_INTERVAL_S = 1.0
REGISTRY = CollectorRegistry(auto_describe=True)
_LIVE: list[tuple[Gauge, Callable[[], float]]] = []

UPSTREAM_ERRORS = Counter(
    "switchyard_upstream_errors",
    "Provider calls that failed, by provider and kind",
    ["provider", "kind"],
    registry=REGISTRY,
)
STORE_WRITTEN = Counter(
    "switchyard_store_written", "Completions written to the inference store", registry=REGISTRY
)
STORE_UNWRITTEN = Gauge(
    "switchyard_store_unwritten",
    "Completions accepted for storing but not written yet (queued or waiting for retry)",
    registry=REGISTRY,
    multiprocess_mode="livesum",  # the live workers' sum
)
STORE_FAILED_WRITES = Counter(
    "switchyard_store_failed_writes",
    "Attempts to write a batch that failed (the batch is kept and retried)",
    registry=REGISTRY,
)
STREAMS_NOT_STORED = Counter(
    "switchyard_store_unfinished_streams",
    "Streamed completions not stored because they ended early (an error, or the client left)",
    registry=REGISTRY,
)
STORE_DROPPED = Counter(
    "switchyard_store_dropped",
    "Completions given up on, also logged: queue full, a row the database refuses, "
    "a stream too large to keep, or the database still down when shutdown's flush "
    "times out",
    registry=REGISTRY,
)


def live_gauge(gauge: Gauge, read: Callable[[], float]) -> None:
    """``gauge`` reads ``read()``: at each scrape in one process; shared, when published."""
    if SHARED:
        _LIVE.append((gauge, read))
    else:
        gauge.set_function(read)


def publish() -> None:
    for gauge, read in _LIVE:
        gauge.set(read())


async def publish_forever() -> None:
    while True:
        try:
            publish()
            _forget_dead_workers()
        except Exception:  # the metrics must never take the worker down
            log.exception("metrics: publishing failed")
        await asyncio.sleep(PUBLISH_INTERVAL_S)


def _forget_dead_workers() -> None:
    """Live gauges of workers that died without their lifespan's end (killed, out of
    memory) leave the sums: uvicorn starts another in their place."""
    for path in Path(os.environ[MULTIPROCESS_DIR]).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if not pid.isdigit():
            continue  # not a pid: another program's process identifier
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            # Another worker may be removing the same files at the same moment.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(pid))  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, under another user


def process_exit() -> None:
    """This worker's live gauges leave the sums (its counters stay counted)."""
    if SHARED:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    if not SHARED:
        return generate_latest(REGISTRY)
    publish()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def routes() -> list[Route]:
    async def metrics(request: Request) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
