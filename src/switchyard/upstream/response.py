"""A provider's answer on a pooled connection: its head at once, its body on demand."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping

from switchyard.upstream import connection
from switchyard.upstream.base import UpstreamRequest, broken_answer, ends_at_close
from switchyard.upstream.connection import Http1Connection

# gzip or zlib-wrapped deflate, told apart by their headers.
_ANY_ZLIB = 32 + zlib.MAX_WBITS


class HttpResponse:
    """An answer whose head has arrived; the body is read from the connection on demand."""

    __slots__ = ("_conn", "_release", "_request", "headers", "status")

    def __init__(
        self,
        conn: Http1Connection,
        request: UpstreamRequest,
        release: Callable[[Http1Connection], None],
    ) -> None:
        self._release = release  # the connection's way back to its pool
        self._conn: Http1Connection | None = conn
        self._request = request
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers

    @property
    def ends_at_close(self) -> bool:
        # Asked only of a stream that ended without [DONE]: nothing on every answer.
        return ends_at_close(self.headers)

    async def read(self) -> bytes:
        conn = self._take()
        try:
            decoder = _decoder(self.headers)
            body = await conn.read_all()
            if decoder is None or not body:  # an empty body (a 429, say) is not packed
                return body
            body = decoder.decompress(body, connection.MAX_WHOLE_BODY)
            if decoder.unconsumed_tail:  # a "zip bomb" as much as a real answer
                raise connection.too_large(" unpacked")
            _check_ended(decoder)
            return body
        except (OSError, TimeoutError, zlib.error) as err:
            raise broken_answer(self._request, err) from err
        finally:
            self._release(conn)

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        conn = self._take()
        try:
            decoder = _decoder(self.headers)
            packed = False
            while (chunk := await conn.next_chunk()) is not None:
                if decoder is None:
                    if chunk:
                        yield chunk
                    continue
                packed = packed or bool(chunk)
                for piece in _inflated(decoder, chunk):
                    yield piece
            if decoder is not None and packed:
                _check_ended(decoder)
        except (OSError, TimeoutError, zlib.error) as err:
            raise broken_answer(self._request, err) from err
        finally:
            self._release(conn)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._release(self._take())

    def __del__(self) -> None:
        # An answer dropped unread (a stream cancelled before its first read) must not
        # keep its socket open until the provider closes it.
        if self._conn is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                self._conn.close()

    def _take(self) -> Http1Connection:
        conn, self._conn = self._conn, None
        if conn is None:
            raise RuntimeError("the answer's body was already taken")
        return conn


_INFLATED = frozenset({"gzip", "x-gzip", "deflate"})
# Codings that transform the body, which this client cannot undo (alone, or after
# another: "gzip, br"): refused, saying so. Any other names no transformation ("utf-8",
# "none", empty: seen from misconfigured proxies) and the body is read as it is, as
# httpx reads it; refused, it turned a provider's 429 into a 502.
_UNDECODABLE = frozenset({"br", "zstd", "compress", "x-compress", "dcb", "dcz", "aes128gcm"})
_APPLIED = _INFLATED | _UNDECODABLE


def _decoder(headers: Mapping[str, str]) -> zlib._Decompress | None:
    coding = headers.get("content-encoding", "identity").strip().lower()
    if coding == "identity":  # every answer without the header: nothing more to look at
        return None
    if coding in _INFLATED:
        return zlib.decompressobj(_ANY_ZLIB)
    applied = [c for c in map(str.strip, coding.split(",")) if c in _APPLIED]
    if not applied:
        return None
    if len(applied) == 1 and applied[0] in _INFLATED:  # beside labels that change nothing
        return zlib.decompressobj(_ANY_ZLIB)
    raise zlib.error(f"content-encoding {coding!r}, which was not asked for")


# The most one streamed read is inflated to at a time: a read holds up to a few hundred
# KiB packed, which a provider's (or a proxy's) zeros could inflate a thousandfold.
INFLATED_PIECE = 1024 * 1024


def _inflated(decoder: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """``data`` inflated, in pieces of at most INFLATED_PIECE bytes."""
    while True:
        piece = decoder.decompress(data, INFLATED_PIECE)
        if piece:
            yield piece
        data = decoder.unconsumed_tail
        # A full piece may leave output inside zlib even with no input left.
        if not data and len(piece) < INFLATED_PIECE:
            return


def _check_ended(decoder: zlib._Decompress) -> None:
    # A compressed body whose framing (a length, chunks) ended before its own end was
    # cut somewhere on the way: refused, as a cut plain body is.
    if not decoder.eof:
        raise zlib.error("the compressed body ended before its end")
