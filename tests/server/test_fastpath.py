"""The dispatcher in front of Starlette: routes it does not serve itself still answer
an unexpected error once, as JSON, on a connection that stays open."""

from __future__ import annotations

import socket

import pytest
from tests.server.test_protocol import _read_responses
from tests.support.server import thread_server

from switchyard.registry import ModelRegistry


def test_an_unexpected_error_on_a_starlette_route_is_one_json_500_and_keeps_the_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: ModelRegistry, model_id: str) -> None:
        raise RuntimeError("a bug in the registry")

    monkeypatch.setattr(ModelRegistry, "resolve", broken)
    with thread_server({"providers": []}) as handle:
        port = int(handle.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /v1/models/p/m HTTP/1.1\r\nHost: localhost\r\n\r\n")
            (failed,) = _read_responses(sock, 1)
            assert failed.startswith(b"HTTP/1.1 500 ")
            assert b'"error":' in failed and b"Switchyard failed" in failed
            # The same connection answers the next request: it was not closed.
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            (health,) = _read_responses(sock, 1)
            assert health.endswith(b'{"status":"OK"}')
    logged = [
        r for r in caplog.records if r.exc_info and "a bug in the registry" in str(r.exc_info[1])
    ]
    assert len(logged) == 1  # ours; uvicorn's "Exception in ASGI application" no more
