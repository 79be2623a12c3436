"""Request ids: made once per request, a client's plain token kept, marked on log lines."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from switchyard.server.request_id import CURRENT, RequestIdFilter, assign


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"host", b"x"), *headers]}


def _line() -> logging.LogRecord:
    record = logging.LogRecord("switchyard", logging.WARNING, __file__, 1, "m", None, None)
    RequestIdFilter().filter(record)
    return record


def test_an_id_is_made_once_per_request_and_marks_its_log_lines() -> None:
    def handle(scope: dict[str, Any]) -> tuple[bytes, bytes, str]:
        rid = assign(scope)
        return rid, assign(scope), _line().request  # type: ignore[attr-defined]

    first, again, marked = contextvars.copy_context().run(handle, _scope())
    second, _, _ = contextvars.copy_context().run(handle, _scope())
    assert first == again
    assert first != second
    assert first.startswith(b"req_") and len(first) == 28
    assert marked == f" [{first.decode()}]"
    assert CURRENT.get() is None  # each request's task has its own
    assert _line().request == ""  # type: ignore[attr-defined]


def test_a_clients_plain_token_is_kept_and_anything_else_replaced() -> None:
    assert assign(_scope((b"x-request-id", b"trace-1:a/b+c=@_."))) == b"trace-1:a/b+c=@_."
    for odd in (b"", b"two words", b"x" * 129, "é".encode(), b"a\r\nb"):
        assert assign(_scope((b"x-request-id", odd))).startswith(b"req_"), odd
