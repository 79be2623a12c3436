"""Each request's id: the ``x-request-id`` header of its answer, as OpenAI's API sends
one, and a mark on the log lines written while it is handled, so that an error a user
reports (the openai SDKs show ``request_id``) leads to its lines in the log.

A client's own ``X-Request-ID`` (made by a proxy in front, or by a client that joins its
logs to ours) is kept when it is a plain token of at most 128 characters; otherwise the
id is ``req_`` and 24 hex digits: a random part per process and a counter, unique across
workers and restarts without reading random bytes for every request.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from contextvars import ContextVar

from starlette.types import Scope

from switchyard.ids import PLAIN_TOKEN

HEADER = b"x-request-id"
SCOPE_KEY = "switchyard.request_id"
# Set in the request's own task: what its handler, its provider call and its stream log.
CURRENT: ContextVar[bytes | None] = ContextVar("switchyard_request_id", default=None)


class _Ours:
    """``req_``, 12 hex digits of this process's own, 12 of a counter. Made again in a
    forked child (a pre-forking server), which would otherwise repeat its siblings' ids."""

    __slots__ = ("count", "prefix")

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = b"req_" + secrets.token_hex(6).encode()
        self.count = itertools.count(1)

    def next(self) -> bytes:
        return self.prefix + b"%012x" % next(self.count)


_OURS = _Ours()
os.register_at_fork(after_in_child=_OURS.renew)


def new_id() -> bytes:
    """An id of ours, for an answer that has no request to take one from."""
    return _OURS.next()


def assign(scope: Scope) -> bytes:
    """The id of the request of ``scope``, made once and kept in it; the header's value."""
    rid: bytes | None = scope.get(SCOPE_KEY)
    if rid is not None:
        return rid
    for name, value in scope["headers"]:
        if name == HEADER and PLAIN_TOKEN.fullmatch(value):
            rid = bytes(value)
            break
    else:
        rid = _OURS.next()
    scope[SCOPE_KEY] = rid
    CURRENT.set(rid)
    return rid


class RequestIdFilter(logging.Filter):
    """Adds ``request``: `` [<id>]`` on a line written while a request is handled, else
    nothing, for a format that ends with ``%(request)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = CURRENT.get()
        record.request = f" [{rid.decode()}]" if rid else ""
        return True
