"""Prometheus metrics, one registry per worker process, served at GET /metrics.

Counters live here so that every part (store, upstream, server) counts into the
same names; with several workers each process reports its own values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REGISTRY = CollectorRegistry(auto_describe=True)

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
    "or the database still down when shutdown's flush times out",
    registry=REGISTRY,
)


def routes() -> list[Route]:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
