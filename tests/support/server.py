"""Real Switchyard servers for tests: in a thread (fast) or as a process (workers, signals).

Both listen on a free 127.0.0.1 port and are ready (``/v1/health`` answers) when the
context manager yields.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from switchyard.config import Config, config_from_dict
from switchyard.recording.harness import serve_app_in_thread, stop_process
from switchyard.server.app import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/v1/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server at {url} not ready after {timeout}s")


_WITH_LIMIT = (
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@dataclass
class ServerHandle:
    url: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


@contextlib.contextmanager
def thread_server(config: Config | dict[str, Any]) -> Iterator[ServerHandle]:
    """create_app(config) under uvicorn in a background thread with its own loop."""
    if isinstance(config, dict):
        config = config_from_dict(config, "<test>")
    with serve_app_in_thread(create_app(config)) as url:
        yield ServerHandle(url=url)


@contextlib.contextmanager
def process_server(
    config: dict[str, Any] | None,
    tmp_path: Path,
    *,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 90.0,
    open_files: tuple[int, int] | None = None,
) -> Iterator[ServerHandle]:
    """``python -m switchyard run`` as a child process; killed at the end if still alive.
    ``open_files``: the (soft, hard) limit on open files it starts with."""
    port = free_port()
    cmd = [sys.executable, "-m", "switchyard", "run", "--port", str(port), *args]
    if open_files is not None:  # set by a Python that then becomes the server (no fork hook)
        cmd[1:1] = ["-c", _WITH_LIMIT % open_files, sys.executable]
    if config is not None:
        path = tmp_path / f"config-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(path)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    full_env.update({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    full_env.update(env or {})
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    handle = ServerHandle(url=url, proc=proc, log_path=log_path)
    try:
        try:
            wait_ready(url, timeout, proc)
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n--- server log ---\n{handle.log()}") from None
        yield handle
    finally:
        stop_process(proc)
