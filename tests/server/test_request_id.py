"""Request ids: made once per request, a client's plain token kept, marked on log lines."""

from __future__ import annotations

import contextvars
import logging
import os
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
    def handle(value: bytes) -> bytes:
        return assign(_scope((b"x-request-id", value)))

    def run(value: bytes) -> bytes:
        return contextvars.copy_context().run(handle, value)

    assert run(b"trace-1:a/b+c=@_.") == b"trace-1:a/b+c=@_."
    for odd in (b"", b"two words", b"x" * 129, "é".encode(), b"a\r\nb"):
        assert run(odd).startswith(b"req_"), odd


def test_a_forked_child_makes_ids_of_its_own() -> None:
    parent = [assign(_scope()) for _ in range(2)]
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(writer, assign(_scope()))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader, "rb") as pipe:
        theirs = pipe.read()
    assert theirs[:16] != parent[1][:16]  # another process part
    assert theirs.endswith(b"000000000001")  # its own count
