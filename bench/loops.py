"""The load generator's two loops over :mod:`http1` connections: :class:`OpenLoop`
(requests on a fixed, seeded schedule, a pool of keep-alive connections) and
:class:`ClosedLoop` (a fixed number of connections, each sending again as soon as its
answer is in). Both record into :class:`loadstats.Stats`."""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Coroutine
from typing import Any

from http1 import Conn, Request, ResponseReader
from loadstats import Stats

RECONNECT_PAUSE = 0.01  # closed loop: do not spin if the server keeps refusing
# Open loop: each start moves up to a quarter of the period either way, from one seed.
JITTER = 0.25
JITTER_SEED = 20261207
SPIN_S = 0.001  # the last stretch before a start, waited out by yielding to the loop


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
        # The same jitter in every run (and for every variant of a run): a schedule at
        # exact multiples of 50 ms would meet the store's 50 ms flush at one fixed phase.
        jitter = random.Random(JITTER_SEED)
        for i in range(total):
            t_sched = t0 + (i + jitter.uniform(-JITTER, JITTER)) / rate
            delay = t_sched - time.perf_counter() - SPIN_S
            if delay > 0:
                await asyncio.sleep(delay)
            # The loop's timers fire up to a millisecond early or late: the last stretch
            # is waited out by yielding, so a request starts at its time, not near it.
            while time.perf_counter() < t_sched:  # noqa: ASYNC110 (a deadline, not an event)
                await asyncio.sleep(0)
            self.stats.lag.append(time.perf_counter() - t_sched)
            # Latency runs from the scheduled start: were this loop late (a stall, the
            # CPU taken), the wait is counted, as a user on that schedule would see it.
            self.submit(self.next_request(), t_sched)
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
