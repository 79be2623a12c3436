"""The browser guard's decisions, header by header (``server/browsers.py``)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from switchyard.errors import PermissionDeniedError
from switchyard.server.browsers import BrowserGuard, host_key


def scope(
    host: str | None = "127.0.0.1:8321",
    origin: str | None = None,
    server: tuple[str, int] | None = ("127.0.0.1", 8321),
) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if host is not None:
        headers.insert(0, (b"host", host.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "http", "headers": headers, "server": server}


def code(result: PermissionDeniedError | bool) -> str | bool | None:
    return result.code if isinstance(result, PermissionDeniedError) else result


GUARD = BrowserGuard(["https://App.example.com/"], ["gateway.internal"], keys=False)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8321", False),
        ("localhost", False),
        ("localhost.:8321", False),  # the same name, fully qualified
        ("LOCALHOST:8321", False),
        ("ui.localhost:8321", False),
        ("[::1]:8321", False),
        ("192.168.1.4", False),  # an address names no domain to rebind
        ("gateway.internal:8321", False),
        ("evil.example:8321", "host_not_allowed"),
        ("127.0.0.1.evil.example", "host_not_allowed"),
        ("[::1", "host_not_allowed"),
        ("", "host_not_allowed"),
        (None, False),  # HTTP/1.0 with no Host: no browser speaks it
    ],
)
def test_the_host_on_a_loopback_address(host: str | None, expected: str | bool) -> None:
    assert code(GUARD.screen(scope(host=host))) == expected
    assert code(GUARD.screen(scope(host=host))) == expected  # the same once remembered


@pytest.mark.parametrize("server", [("10.0.0.5", 8321), ("::", 8321), None])
def test_the_host_is_not_checked_off_loopback(server: tuple[str, int] | None) -> None:
    # Reached over a network (a container's compose name) or a Unix socket.
    assert GUARD.screen(scope(host="switchyard:8321", server=server)) is False


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://app.example.com", True),
        ("HTTPS://APP.EXAMPLE.COM", True),
        ("http://localhost:3000", True),
        ("http://127.0.0.1", True),
        ("http://[::1]:5173", True),
        ("https://app.example.com:8443", "origin_not_allowed"),
        ("https://evil.example", "origin_not_allowed"),
        ("http://localhost.evil.example", "origin_not_allowed"),
        ("null", "origin_not_allowed"),
        ("http://[bad", "origin_not_allowed"),
    ],
)
def test_the_origin(origin: str, expected: str | bool) -> None:
    assert code(GUARD.screen(scope(origin=origin))) == expected


def test_stars_allow_any_origin_and_host() -> None:
    guard = BrowserGuard(["*"], ["*"], keys=False)
    assert guard.screen(scope(host="evil.example", origin="https://evil.example")) is True


def test_with_keys_any_page_may_try_and_no_host_is_checked() -> None:
    # A page holds no key unless its user gave it one: a 401 stops the rest.
    guard = BrowserGuard([], [], keys=True)
    assert guard.screen(scope(host="evil.example")) is False
    assert guard.screen(scope(origin="https://chat.example", host="evil.example")) is True


@pytest.mark.parametrize(
    ("server", "browser", "expected"),
    [
        # Off loopback (a browser behind an HTTPS proxy, an SDK by a compose name): a
        # real name and a rebound one look alike there; API keys guard such a server.
        (("172.17.0.2", 8321), True, False),
        (("172.17.0.2", 8321), False, False),
        (("::ffff:127.0.0.1", 8321), False, "host_not_allowed"),  # a dual-stack socket
    ],
)
def test_the_host_is_checked_on_loopback_only(
    server: tuple[str, int], browser: bool, expected: str | bool
) -> None:
    request = scope(host="evil.example", server=server)
    if browser:
        request["headers"].append((b"sec-fetch-site", b"none"))
    assert code(GUARD.screen(request)) == expected


@pytest.mark.parametrize("host", ["host.docker.internal:8321", socket.gethostname()])
def test_names_no_one_outside_can_point_here_pass(host: str) -> None:
    assert GUARD.screen(scope(host=host)) is False


def test_listed_hosts_and_origins_are_compared_as_browsers_send_them() -> None:
    guard = BrowserGuard(["HTTPS://App.example:443/"], ["Gateway.Example:8321"], keys=False)
    assert guard.screen(scope(host="gateway.example:9999")) is False
    assert guard.screen(scope(host="gateway.example.")) is False
    assert host_key("::1") == "::1" and host_key("[::1]:8321") == "::1"
    assert guard.screen(scope(origin="https://app.example")) is True
