"""A real HTTP proxy for the tests: proxy.py (PyPI) in a process of its own on 127.0.0.1.

It forwards absolute-form requests (adding ``Via: 1.1 proxy.py ...``), opens CONNECT
tunnels, and with ``basic_auth`` answers 407 to requests without the credentials. Its
log holds one access line per connection, written when the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

from switchyard.recording.harness import stop_process


@dataclass
class HttpProxy:
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)

    async def wait_for_log(self, text: str) -> str:
        """The proxy's log once it holds ``text`` (AssertionError after 10 s). The loop
        runs meanwhile: the line is written when the proxy sees the connection close."""
        for _ in range(200):
            log = self.log_path.read_text(errors="replace")
            if text in log:
                return log
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not in the proxy's log:\n{log}")


@contextlib.contextmanager
def http_proxy(tmp_path: Path, basic_auth: str | None = None) -> Iterator[HttpProxy]:
    port = free_port()
    cmd = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
    cmd += ["--num-workers", "1", "--num-acceptors", "1"]
    if basic_auth is not None:
        cmd += ["--basic-auth", basic_auth]
    log_path = tmp_path / f"proxy-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    proxy = HttpProxy(port, log_path, proc)
    try:
        _wait_listening(port, proc, log_path)
        yield proxy
    finally:
        proxy.stop()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy.py exited: {log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError("proxy.py did not listen within 30 s")
