"""Incremental server-sent-events parsing and encoding, for the data field only.

OpenAI-style streams only use ``data:`` lines (a JSON chunk each, then ``[DONE]``), so the
parser returns each event's data payload and ignores ``event:``, ``id:``, ``retry:`` and
comments. It is on the streaming hot path: it works on whole byte strings with
``split``/``replace`` and only walks lines one by one for the rare multi-line event.
"""

from __future__ import annotations

import sys

__all__ = ["DONE", "MAX_EVENT_BYTES", "EventTooLarge", "SSEParser", "encode_event"]

DONE = b"[DONE]"
"""The data payload OpenAI-compatible providers send to close a stream."""

# The most of a stream a provider's parser holds while an event is not ended. A chunk is
# a few KB (a token's logprobs, a piece of a tool call); 64 MiB is beyond any real one,
# and bounds what a broken or hostile stream (lines ended by one newline, never a blank
# line) can make a worker hold: a few times this, in the joins of the parse.
MAX_EVENT_BYTES = 64 * 1024 * 1024

_DATA_PREFIX = b"data: "
# On the hot path, ``x.find(b"...") < 0`` rather than ``b"..." not in x``: bytes' ``in``
# first tries its operand as an integer, raising and clearing a TypeError each time
# (~1k instructions; bench/NOTES.md, section 55).


class EventTooLarge(ValueError):
    """More than the parser's ``max_pending`` bytes arrived without ending an event."""


class SSEParser:
    """Split a byte stream into the data payloads of its events.

    ``feed`` takes chunks cut anywhere (even inside a line or a ``\\r\\n`` pair) and returns
    the payloads of the events it completed; ``flush`` returns a final event that the stream
    ended without a blank line after. ``max_pending`` bounds what it holds of an event not
    ended yet (EventTooLarge past it): a stream from elsewhere whose events never end (lines
    ended by one newline only) would otherwise grow in memory for as long as it is sent.
    """

    __slots__ = ("_cr_pending", "_ends_with_lf", "_max_pending", "_parts", "_pending")

    def __init__(self, max_pending: int = sys.maxsize) -> None:
        self._max_pending = max_pending
        self._pending = 0  # bytes in _parts
        self._parts: list[bytes] = []
        # Whether the buffered text ends with "\n", so that a chunk starting with "\n"
        # completes an event although neither piece holds "\n\n".
        self._ends_with_lf = False
        # A chunk ending in "\r" may be the first half of "\r\n": hold it back until the next
        # chunk says so, otherwise it would count as two line ends.
        self._cr_pending = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk``; return the data of every event completed by it, in order."""
        chunk = self._normalise_newlines(chunk)
        if not chunk:
            return []
        if chunk.find(b"\n\n") < 0 and not (self._ends_with_lf and chunk[0] == 0x0A):
            self._parts.append(chunk)
            self._pending += len(chunk)
            if self._pending > self._max_pending:
                raise EventTooLarge(f"{self._pending} bytes without the end of an event")
            self._ends_with_lf = chunk[-1] == 0x0A
            return []
        self._parts.append(chunk)
        buffered = b"".join(self._parts)
        if buffered.startswith(_DATA_PREFIX) and buffered.endswith(b"\n\n"):
            # The usual burst: whole events of one "data: " line each. Split in one call,
            # and sure of that shape when no payload holds a line end (a comment, another
            # field or a multi-line event would): a 20-event burst costs a fifth of the
            # walk over its events below. Joined and searched (memchr), not counted:
            # bytes.count walks byte by byte, 5 instructions a byte, 6% of a relayed
            # read's work (bench/NOTES.md, section 52).
            payloads = buffered[6:-2].split(b"\n\ndata: ")
            if b"".join(payloads).find(b"\n") < 0:
                self._parts = []
                self._pending = 0
                self._ends_with_lf = False
                return payloads
        *blocks, rest = buffered.split(b"\n\n")
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        self._ends_with_lf = rest.endswith(b"\n")
        return _payloads(blocks)

    def flush(self) -> list[bytes]:
        """Return the data of an event left unterminated at the end of the stream."""
        if self._cr_pending:
            self._parts.append(b"\n")
            self._cr_pending = False
        buffered = b"".join(self._parts)
        self._parts = []
        self._pending = 0
        self._ends_with_lf = False
        return _payloads(buffered.split(b"\n\n"))

    def _normalise_newlines(self, chunk: bytes) -> bytes:
        """Turn "\\r\\n" and lone "\\r" line ends into "\\n"."""
        if self._cr_pending:
            chunk = b"\r" + chunk
            self._cr_pending = False
        if chunk.find(b"\r") < 0:
            return chunk
        if chunk[-1] == 0x0D:
            self._cr_pending = True
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _payloads(blocks: list[bytes]) -> list[bytes]:
    """Data payloads of the events in ``blocks`` (texts between blank lines)."""
    payloads: list[bytes] = []
    for block in blocks:
        # The usual event is one "data: ..." line: take it without looking at lines.
        if block.startswith(_DATA_PREFIX) and block.find(b"\n") < 0:
            payloads.append(block[6:])
            continue
        data = _block_data(block)
        if data is not None:
            payloads.append(data)
    return payloads


def _block_data(block: bytes) -> bytes | None:
    """Data of one event written over several lines; ``None`` if it has no data field."""
    lines: list[bytes] = []
    for line in block.split(b"\n"):
        field, colon, value = line.partition(b":")
        if field != b"data":
            continue  # comment (empty field name), blank line or another field
        if colon and value.startswith(b" "):
            value = value[1:]
        lines.append(value)
    return b"\n".join(lines) if lines else None


def encode_event(data: bytes) -> bytes:
    """Frame ``data`` as one event: ``data: <data>\\n\\n`` (one data line per line of data)."""
    if b"\n" not in data and b"\r" not in data:
        return _DATA_PREFIX + data + b"\n\n"
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(_DATA_PREFIX + line + b"\n" for line in lines) + b"\n"
