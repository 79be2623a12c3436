"""A fast fake OpenAI-compatible upstream: canned answers over keep-alive HTTP/1.1.

    python bench/fake_upstream.py --port 18080 [--pace-ms 5]

It must never be what the benchmark measures, so it does almost nothing per request:
an ``asyncio.Protocol`` (on uvloop when installed) with a minimal HTTP/1.1 parser
(Content-Length bodies only; chunked request bodies are refused) and every answer
pre-serialised at start, headers included. One core serves tens of thousands of
requests per second.

Routes (any prefix before ``/v1`` is accepted):
  GET  /health, /v1/health       200
  GET  /v1/models                fake-model, fake-model-paced, fake-embed
  POST /v1/chat/completions      chat.completion JSON; with ``"stream": true`` an SSE
                                 stream in one write; model fake-model-paced: the same
                                 events, each flushed --pace-ms apart
  POST /v1/embeddings            one 1,536-float embedding
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
from typing import cast

import payloads

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_PACED = re.compile(rb'"model"\s*:\s*"[^"]*' + payloads.PACED_MODEL.encode() + rb'"')
MAX_HEAD = 64 * 1024


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _fixed(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        status.encode(),
        content_type,
        len(body),
    )
    return head + body


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


class Answers:
    """Every response, serialised once at start."""

    def __init__(self) -> None:
        events = payloads.stream_events()
        self.chat = _fixed("200 OK", payloads.chat_completion())
        self.embed = _fixed("200 OK", payloads.embedding())
        self.models = _fixed("200 OK", payloads.model_list())
        self.health = _fixed("200 OK", b'{"status":"ok"}')
        self.not_found = _fixed("404 Not Found", b'{"error":{"message":"no such route"}}')
        self.refused = _fixed("501 Not Implemented", b'{"error":{"message":"chunked body"}}')
        self.stream = STREAM_HEAD + b"".join(_chunk(e) for e in events) + LAST_CHUNK
        # Paced: the headers go with the first event and the terminator with the last.
        self.paced = [_chunk(e) for e in events]
        self.paced[0] = STREAM_HEAD + self.paced[0]
        self.paced[-1] += LAST_CHUNK


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests in order, answer each from :class:`Answers`."""

    def __init__(self, answers: Answers, pace_s: float) -> None:
        self.answers = answers
        self.pace_s = pace_s
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pacing = False  # a paced answer is being written; later requests wait
        self.pacer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.pacing:
            self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def process(self) -> None:
        """Answer every complete request in the buffer (pipelining works too)."""
        while self.transport is not None and not self.pacing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buf[:end])
            match = _CONTENT_LENGTH.search(head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4 : total])
            del self.buf[:total]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if _CHUNKED.search(head):
            self.transport.write(self.answers.refused)
            self.transport.close()
            return
        close = _CLOSE.search(head) is not None
        if method == b"POST" and path.endswith(b"/chat/completions") and _STREAM.search(body):
            if _PACED.search(body):
                self.pacing = True
                # Keep a reference: the loop holds tasks only weakly.
                self.pacer = asyncio.get_running_loop().create_task(self.paced(close))
                return
            self.transport.write(self.answers.stream)
        else:
            self.transport.write(self.route(method, path))
        if close:
            self.transport.close()

    def route(self, method: bytes, path: bytes) -> bytes:
        a = self.answers
        if method == b"POST" and path.endswith(b"/chat/completions"):
            return a.chat
        if method == b"POST" and path.endswith(b"/embeddings"):
            return a.embed
        if method == b"GET" and path.endswith(b"/models"):
            return a.models
        if method == b"GET" and path.endswith(b"/health"):
            return a.health
        return a.not_found

    async def paced(self, close: bool) -> None:
        """Write the stream's events ``pace_s`` apart, on an absolute schedule so that
        timer rounding does not add up over the 20 gaps."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        transport = self.transport
        if transport is None:
            return
        for i, piece in enumerate(self.answers.paced):
            delay = start + i * self.pace_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            transport.write(piece)
        self.pacing = False
        if close:
            transport.close()
        else:
            self.process()


def install_uvloop() -> str:
    """Use uvloop when it is installed (it is, with Switchyard); plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def serve(host: str, port: int, pace_s: float) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers()
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers, pace_s), host, port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()  # open keep-alive connections die with the loop; nothing to flush


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--pace-ms", type=float, default=5.0, help="gap between paced events")
    args = ap.parse_args()
    loop_name = install_uvloop()
    print(f"fake upstream on http://{args.host}:{args.port} ({loop_name})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.pace_ms / 1000.0))


if __name__ == "__main__":
    main()
