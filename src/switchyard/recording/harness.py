"""Start a Switchyard for a test: in a thread of the test process, or as a real process.

Both listen on 127.0.0.1 and are serving when the context manager yields their URL. The
thread variant is fast and shares the test's interpreter; the process variant runs
``switchyard run`` exactly as a user would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["serve", "serve_app_in_thread", "serve_in_process", "serve_in_thread", "stop_process"]

STARTUP_TIMEOUT = 60.0


def serve(
    config: dict[str, Any], how: str, workdir: Path
) -> contextlib.AbstractContextManager[str]:
    """``serve_in_thread`` or ``serve_in_process`` by name (``"thread"``, ``"process"``)."""
    if how == "thread":
        return serve_in_thread(config)
    if how == "process":
        return serve_in_process(config, workdir)
    raise ValueError(f"unknown way to run Switchyard {how!r}; use 'thread' or 'process'")


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_in_thread(config: dict[str, Any]) -> Iterator[str]:
    """The app for ``config`` under uvicorn, on its own event loop in a daemon thread."""
    from switchyard.config import config_from_dict
    from switchyard.server.app import create_app

    # The test's settings win over SWITCHYARD_* variables of the shell that runs pytest.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    with serve_app_in_thread(create_app(config_from_dict(config, "<pytest>", env))) as url:
        yield url


@contextlib.contextmanager
def serve_app_in_thread(app: Any) -> Iterator[str]:
    """Any ASGI ``app`` under uvicorn in a daemon thread; yields its URL once it serves."""
    import uvicorn

    from switchyard.server.protocol import HTTP_PROTOCOL, KEEP_ALIVE_SECONDS

    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        loop="asyncio",
        http=HTTP_PROTOCOL,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        server_header=False,  # as switchyard run (cli.py)
    )
    server = uvicorn.Server(config)
    sock = _listening_socket()  # bound before the thread starts: no free-port race
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("Switchyard did not start in its thread; see the log above")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.contextmanager
def serve_in_process(config: dict[str, Any], workdir: Path) -> Iterator[str]:
    """``python -m switchyard run`` with ``config`` written to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "switchyard.yaml"
    config_path.write_text(yaml.safe_dump(config))
    with _listening_socket() as probe:
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    cmd = [sys.executable, "-m", "switchyard", "run", "--config", str(config_path)]
    log_path = workdir / "switchyard.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log_path)
        yield url
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (so the server flushes its store), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"switchyard exited with {proc.returncode}:\n{log_path.read_text()}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url + "/v1/health", timeout=1.0) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"switchyard not ready after {STARTUP_TIMEOUT}s:\n{log_path.read_text()}")
