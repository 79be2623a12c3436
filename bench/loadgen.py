"""Load generator: raw asyncio HTTP/1.1 over keep-alive connections, 127.0.0.1 only.

    # open loop: 20 requests/s for 15 s, latency p50/p90/p99
    python bench/loadgen.py --base-url http://127.0.0.1:8321/v1 --prefix openai/ \
        --kinds chat --rate 20 --duration 15
    # closed loop (saturation): 32 connections, each sends again as soon as it has its answer
    python bench/loadgen.py --base-url http://127.0.0.1:8321/v1 --kinds stream --conns 32 \
        --duration 8

Prints one JSON object on stdout. Kinds (``payloads.KINDS``): chat, stream, paced, embed;
several (``--kinds chat,stream,embed``) are sent in turn.

Open loop: request i starts at t0 + i/rate whatever the server does, so a slow server
is charged for the queue it causes (no coordinated omission). A request's latency runs
from its start, including any wait for a free connection (up to ``--max-conns`` are
opened, then requests queue); the event loop's lateness against the schedule is
reported as ``sched_lag`` (large values mean the generator itself was starved).
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
import collections
import json
import math
import re
import resource
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import payloads

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RECONNECT_PAUSE = 0.01  # closed loop: do not spin if the server keeps refusing


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    wire: bytes  # the whole request, head and body, sent with one write
    stream: bool


def build_requests(base_url: str, prefix: str, kinds: list[str]) -> list[Request]:
    url = urlsplit(base_url)
    out = []
    for kind in kinds:
        body = payloads.request_body(kind, prefix)
        head = (
            f"POST {url.path.rstrip('/')}{payloads.request_path(kind)} HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nContent-Type: application/json\r\nAccept: */*\r\n"
            f"Authorization: Bearer bench\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(Request(kind, head.encode() + body, kind in payloads.STREAM_KINDS))
    return out


# ---------------------------------------------------------------- response parsing
_HEAD, _FIXED, _SIZE, _CHUNK, _CRLF, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CONN_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


class ResponseReader:
    """Incremental HTTP/1.1 response parser: a Content-Length, chunked or
    close-delimited body. Notes when the first SSE ``data:`` event arrived."""

    __slots__ = ("_buf", "_need", "_state", "body", "keep_alive", "status", "t_first")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._need = 0
        self.status = 0
        self.body = bytearray()
        self.keep_alive = True
        self.t_first: float | None = None

    def feed(self, data: bytes, now: float) -> bool:
        """Take bytes off the wire; True once the response is complete."""
        self._buf += data
        while self._state != _DONE:
            if not _STEPS[self._state](self, now):
                return False
        return True

    # One method per state; each returns False when it needs more bytes.
    def _on_head(self, now: float) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        self._head(bytes(self._buf[:end]))
        del self._buf[: end + 4]
        return True

    def _on_data(self, now: float) -> bool:
        """A Content-Length body or one chunk's data, passed on as it arrives."""
        take = min(self._need, len(self._buf))
        if take:
            self._data(bytes(self._buf[:take]), now)
            del self._buf[:take]
            self._need -= take
        if self._need:
            return False
        self._state = _DONE if self._state == _FIXED else _CRLF
        return True

    def _on_crlf(self, now: float) -> bool:
        """The line end after a chunk's data."""
        if len(self._buf) < 2:
            return False
        del self._buf[:2]
        self._state = _SIZE
        return True

    def _on_size(self, now: float) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            return False
        size = int(bytes(self._buf[:end]).split(b";", 1)[0], 16)
        del self._buf[: end + 2]
        self._state, self._need = (_CHUNK, size) if size else (_TRAILER, 0)
        return True

    def _on_trailer(self, now: float) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            return False
        del self._buf[: end + 2]
        if end == 0:
            self._state = _DONE
        return True

    def _on_until_close(self, now: float) -> bool:
        """No length given: the body ends when the server closes."""
        self._data(bytes(self._buf), now)
        self._buf.clear()
        return False

    def _head(self, head: bytes) -> None:
        self.status = int(head[9:12])
        self.keep_alive = _CONN_CLOSE.search(head) is None
        length = _LENGTH.search(head)
        if _CHUNKED.search(head):
            self._state = _SIZE
        elif length is not None:
            self._need = int(length.group(1))
            self._state = _FIXED if self._need else _DONE
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self._state = _DONE
        else:
            self._state, self.keep_alive = _UNTIL_CLOSE, False

    def _data(self, data: bytes, now: float) -> None:
        if self.t_first is None:
            # "data:" may straddle two reads: look from a few bytes before the new ones.
            start = max(0, len(self.body) - 4)
            self.body += data
            if self.body.find(b"data:", start) >= 0:
                self.t_first = now
        else:
            self.body += data

    def closed(self) -> bool:
        """The server closed the connection: True if that completed the response."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return True
        return False


_STEPS = (
    ResponseReader._on_head,
    ResponseReader._on_data,  # _FIXED
    ResponseReader._on_size,
    ResponseReader._on_data,  # _CHUNK
    ResponseReader._on_crlf,
    ResponseReader._on_trailer,
    ResponseReader._on_until_close,
)


# ---------------------------------------------------------------- statistics
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


# ---------------------------------------------------------------- connections
class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.reader: ResponseReader | None = None
        self.req: Request | None = None
        self.t_start = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, req: Request, t_start: float) -> None:
        assert self.transport is not None
        self.req, self.t_start, self.reader = req, t_start, ResponseReader()
        self.transport.write(req.wire)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        now = time.perf_counter()
        if reader.feed(data, now):
            self.reader = None
            assert self.req is not None
            self.client.finished(self, self.req, self.t_start, now, reader)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reader, self.reader = self.reader, None
        if reader is None:
            self.client.dropped(self)
            return
        assert self.req is not None
        if reader.closed():
            self.client.finished(self, self.req, self.t_start, time.perf_counter(), reader)
        else:
            self.client.failed(self, self.req, f"connection lost: {exc!r}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class Client:
    """What both loops share: the target, the requests in turn, the statistics."""

    def __init__(self, host: str, port: int, requests: list[Request]) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.sent = 0
        self.stats = Stats()
        self.opened = 0
        self.conns: set[Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Hold a reference until it is done: the loop keeps tasks only weakly.
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def next_request(self) -> Request:
        req = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return req

    async def connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: Conn(self), self.host, self.port)
        self.opened += 1
        self.conns.add(proto)
        return proto

    def close_all(self) -> None:
        for conn in list(self.conns):
            conn.close()

    # Callbacks from Conn; each loop overrides them.
    def finished(
        self, conn: Conn, req: Request, t_start: float, t_end: float, reader: ResponseReader
    ) -> None:
        raise NotImplementedError

    def failed(self, conn: Conn, req: Request, why: str) -> None:
        raise NotImplementedError

    def dropped(self, conn: Conn) -> None:
        self.conns.discard(conn)


class OpenLoop(Client):
    """Requests on a fixed schedule; a pool of keep-alive connections serves them."""

    def __init__(self, host: str, port: int, requests: list[Request], max_conns: int) -> None:
        super().__init__(host, port, requests)
        self.max_conns = max_conns
        self.idle: list[Conn] = []
        self.n_open = 0  # open or opening
        self.queue: collections.deque[tuple[Request, float]] = collections.deque()
        self.outstanding = 0
        self.sending = True
        self.closing = False
        self.all_done = asyncio.Event()

    async def run(self, rate: float, duration: float, wait_s: float, prewarm: int) -> None:
        for _ in range(min(prewarm, self.max_conns)):
            self.idle.append(await self.connect())
            self.n_open += 1
        total = max(1, round(rate * duration))
        t0 = time.perf_counter() + 0.01
        for i in range(total):
            t_sched = t0 + i / rate
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            self.stats.lag.append(now - t_sched)
            self.submit(self.next_request(), now)
        self.sending = False
        if self.outstanding:
            try:
                await asyncio.wait_for(self.all_done.wait(), wait_s)
            except TimeoutError:
                self.stats.errors["unfinished"] += self.outstanding
        self.closing = True  # what close_all cuts off is counted as unfinished already
        self.close_all()

    def submit(self, req: Request, t_start: float) -> None:
        self.outstanding += 1
        while self.idle:
            conn = self.idle.pop()
            if conn.open:
                conn.send(req, t_start)
                return
            self.n_open -= 1
        if self.n_open < self.max_conns:
            self.n_open += 1
            self.spawn(self.open_and_send(req, t_start))
        else:
            self.queue.append((req, t_start))

    async def open_and_send(self, req: Request, t_start: float) -> None:
        try:
            conn = await self.connect()
        except OSError as err:
            self.n_open -= 1
            self.stats.error("connect_failed", f"connect: {err!r}")
            self.one_done()
            return
        conn.send(req, t_start)

    def finished(
        self, conn: Conn, req: Request, t_start: float, t_end: float, reader: ResponseReader
    ) -> None:
        self.stats.record(req, t_start, t_end, reader)
        if reader.keep_alive and conn.open:
            self.reuse(conn)
        else:
            conn.close()
            self.lost_conn()
        self.one_done()

    def failed(self, conn: Conn, req: Request, why: str) -> None:
        self.conns.discard(conn)
        if self.closing:
            return
        self.stats.error("connection_lost", f"{req.kind}: {why}")
        self.lost_conn()
        self.one_done()

    def dropped(self, conn: Conn) -> None:
        super().dropped(conn)
        if conn in self.idle:
            self.idle.remove(conn)
            self.n_open -= 1

    def reuse(self, conn: Conn) -> None:
        if self.queue:
            req, t_start = self.queue.popleft()
            conn.send(req, t_start)
        else:
            self.idle.append(conn)

    def lost_conn(self) -> None:
        """A connection is gone: its slot serves the next queued request, if any."""
        self.n_open -= 1
        if self.queue:
            req, t_start = self.queue.popleft()
            self.outstanding -= 1  # submit counts it again
            self.submit(req, t_start)

    def one_done(self) -> None:
        self.outstanding -= 1
        if not self.sending and self.outstanding == 0:
            self.all_done.set()


class ClosedLoop(Client):
    """``conns`` connections, each sending its next request when the answer is in."""

    def __init__(self, host: str, port: int, requests: list[Request]) -> None:
        super().__init__(host, port, requests)
        self.deadline = math.inf
        self.in_flight = 0
        self.late = 0
        self.idle_now = asyncio.Event()

    async def run(self, conns: int, duration: float, grace: float) -> float:
        """Returns the measured window in seconds."""
        opened = await asyncio.gather(
            *(self.connect() for _ in range(conns)), return_exceptions=True
        )
        for result in opened:
            if isinstance(result, BaseException):
                self.stats.error("connect_failed", f"connect: {result!r}")
        t_begin = time.perf_counter()
        self.deadline = t_begin + duration
        for conn in list(self.conns):
            self.send_next(conn)
        await asyncio.sleep(duration)
        if self.in_flight:
            try:
                await asyncio.wait_for(self.idle_now.wait(), grace)
            except TimeoutError:
                self.stats.errors["unfinished"] += self.in_flight
        self.close_all()
        return duration

    def send_next(self, conn: Conn) -> None:
        now = time.perf_counter()
        if now < self.deadline and conn.open:
            self.in_flight += 1
            conn.send(self.next_request(), now)

    def finished(
        self, conn: Conn, req: Request, t_start: float, t_end: float, reader: ResponseReader
    ) -> None:
        self.in_flight -= 1
        if t_end <= self.deadline:
            self.stats.record(req, t_start, t_end, reader)
        else:
            self.late += 1  # answered after the window: neither counted nor an error
        if reader.keep_alive and conn.open:
            self.send_next(conn)
        else:
            conn.close()
            self.conns.discard(conn)
            self.replace()
        self.check_idle()

    def failed(self, conn: Conn, req: Request, why: str) -> None:
        self.in_flight -= 1
        self.conns.discard(conn)
        if time.perf_counter() <= self.deadline:
            self.stats.error("connection_lost", f"{req.kind}: {why}")
        self.replace()
        self.check_idle()

    def replace(self) -> None:
        """Keep the concurrency: open a new connection in place of a lost one."""
        if time.perf_counter() + RECONNECT_PAUSE < self.deadline:
            self.spawn(self.reconnect())

    async def reconnect(self) -> None:
        await asyncio.sleep(RECONNECT_PAUSE)
        try:
            conn = await self.connect()
        except OSError as err:
            self.stats.error("connect_failed", f"connect: {err!r}")
            self.replace()
            return
        self.send_next(conn)

    def check_idle(self) -> None:
        if self.in_flight == 0 and time.perf_counter() >= self.deadline:
            self.idle_now.set()


# ---------------------------------------------------------------- entry point
def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


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
