"""The load generator's HTTP/1.1 client protocol on raw asyncio: the prepared requests,
an incremental response parser, and one keep-alive connection carrying one request at
a time. What the connection reports to goes through :class:`ConnOwner`."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import payloads


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


# ---------------------------------------------------------------- connections
class ConnOwner(Protocol):
    """What a :class:`Conn` reports to (``loops.Client``)."""

    def finished(
        self, conn: Conn, req: Request, t_start: float, t_end: float, reader: ResponseReader
    ) -> None: ...

    def failed(self, conn: Conn, req: Request, why: str) -> None: ...

    def dropped(self, conn: Conn) -> None: ...


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, client: ConnOwner) -> None:
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
