"""Imported at start-up by any Python whose PYTHONPATH holds this folder: its sockets may
only reach loopback (and Unix sockets). Anything else fails with ENETUNREACH and leaves a
line in the log, so a test can show that the process never tried the network.

Only sockets made through Python's ``socket`` module are guarded, which covers asyncio's
default loop but not uvloop (libuv opens its own): run guarded servers with
``--loop asyncio``, or better, in a network namespace (see ``tests/support/offline.py``).
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

MARK = "switchyard-test: network blocked"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"})


def _loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    return isinstance(host, str) and (host in _LOOPBACK_NAMES or host.startswith("127."))


def _refuse(what: str) -> OSError:
    sys.stderr.write(f"{MARK}: {what}\n")
    sys.stderr.flush()
    return OSError(errno.ENETUNREACH, f"{MARK}: {what}")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise _refuse(f"connect to {address!r}")
    _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        _refuse(f"connect_ex to {address!r}")
        return errno.ENETUNREACH
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _loopback(host):
        raise _refuse(f"name lookup of {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo
