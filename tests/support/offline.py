"""A real Switchyard server that cannot reach the network, for replay tests.

Where the kernel allows it (``unshare --net``: as root, or through a user namespace) the
server runs in a network namespace of its own, which has no interface at all, not even
loopback: any connection it tried would fail. It listens on a Unix socket, which works
across namespaces, and the tests talk to it through that socket. Elsewhere it runs as a
plain process on 127.0.0.1 whose Python sockets refuse everything but loopback (the
``no_network`` sitecustomize) on asyncio's loop, which that guard covers.

Either way the server is uvicorn running the same app factory as ``switchyard run``, with
the config and recording settings passed as ``SWITCHYARD_*`` variables, as the CLI does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml
from tests.support.server import free_port

from switchyard.server.protocol import HTTP_PROTOCOL, KEEP_ALIVE_SECONDS

NO_NETWORK = Path(__file__).resolve().parent / "no_network"
BLOCKED_MARK = "switchyard-test: network blocked"


@functools.cache
def unshare_prefix() -> tuple[str, ...] | None:
    """The command prefix that runs a process without network, if this machine allows one
    (``SWITCHYARD_TEST_ISOLATION=guard`` forces the fallback, to test it)."""
    if os.environ.get("SWITCHYARD_TEST_ISOLATION") == "guard" or shutil.which("unshare") is None:
        return None
    for prefix in (("unshare", "--net"), ("unshare", "--map-root-user", "--net")):
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    return None


@dataclass
class OfflineServer:
    proc: subprocess.Popen[bytes]
    log_path: Path
    isolation: str
    """``"netns"`` (own network namespace) or ``"guard"`` (Python sockets guarded)."""
    uds: str | None = None
    port: int | None = None

    @property
    def base_url(self) -> str:
        if self.uds is not None:
            return "http://switchyard/v1"  # the host is ignored over a Unix socket
        return f"http://127.0.0.1:{self.port}/v1"

    def http(self, **kwargs: Any) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=self.uds) if self.uds else None
        return httpx.Client(transport=transport, **kwargs)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url,
            api_key="sk-test-client",
            max_retries=0,
            http_client=self.http(timeout=30.0),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(server: OfflineServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with server.http(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.log()}")
            if server.uds is not None and not os.path.exists(server.uds):
                # httpx leaks the socket of a failed Unix connect: wait for the file.
                time.sleep(0.05)
                continue
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.base_url + "/health").status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def offline_server(
    config: dict[str, Any],
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[OfflineServer]:
    """Start the server for ``config`` (a dict written as YAML) with no network."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    full_env.update(
        {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data")},
        SWITCHYARD_CONFIG=str(config_path),
    )
    full_env.update(env or {})
    factory = ["-m", "uvicorn", "switchyard.server.app:app_from_environment", "--factory"]
    common = ["--lifespan", "on", "--log-level", "info", "--http", HTTP_PROTOCOL]
    common += ["--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)]
    prefix = unshare_prefix()
    if prefix is not None:
        uds = str(workdir / "switchyard.sock")
        cmd = [*prefix, sys.executable, *factory, *common, "--uds", uds, "--loop", "uvloop"]
        extra: dict[str, Any] = {"uds": uds, "isolation": "netns"}
    else:
        port = free_port()
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(NO_NETWORK), full_env.get("PYTHONPATH")) if p
        )
        cmd = [sys.executable, *factory, *common, "--port", str(port), "--loop", "asyncio"]
        extra = {"port": port, "isolation": "guard"}
    log_path = workdir / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    server = OfflineServer(proc=proc, log_path=log_path, **extra)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
