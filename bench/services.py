"""Process and HTTP helpers for ``run.py``: free ports, plain HTTP to 127.0.0.1,
Switchyard's environment, waiting until a process is ready, smoke tests, killing a
process group, and the facts recorded about the checkout and the machine."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import payloads
import proctree
from common import BENCH_DIR, PREFIX, BenchError, Target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def switchyard_env(home: Path, upstream_url: str) -> dict[str, str]:
    """The user's environment without anything that would configure another provider,
    a config file or a proxy, plus the bench's own settings."""
    dropped = ("_API_KEY", "_API_TOKEN", "_BASE_URL", "_PROXY", "_proxy")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWITCHYARD_")
        and not k.endswith(dropped)
        and k not in ("OLLAMA_URL", "VLLM_URL")
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        OPENAI_API_KEY="bench",
        OPENAI_BASE_URL=upstream_url + "/v1",
        HF_HUB_OFFLINE="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def kill_group(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:  # while unreaped, its PID (= its group id) cannot be reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(5)


def wait_until(
    check: Callable[[], bool], proc: proctree.Managed, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            code = proc.popen.returncode
            raise BenchError(f"exited ({code}) before it was ready:\n{proc.log_tail()}")
        try:
            if check():
                return
            last = "not ready"
        except (OSError, http.client.HTTPException, ValueError) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.1)
    raise BenchError(f"{what} not ready after {timeout:.0f} s ({last})")


def models_listed(port: int) -> bool:
    status, body = http_get(port, "/v1/models")
    if status != 200:
        return False
    ids = {m.get("id") for m in json.loads(body).get("data", [])}
    return all(PREFIX + m in ids for m in payloads.MODELS)


def wait_ready(port: int, proc: proctree.Managed, timeout: float) -> None:
    """/v1/health answers, and the upstream's models have been discovered."""
    wait_until(
        lambda: http_get(port, "/v1/health")[0] == 200 and models_listed(port),
        proc,
        timeout,
        proc.name,
    )


def smoke_test(target: Target) -> dict[str, str]:
    """One request of each kind: "ok" or what was wrong with the answer."""
    port, base = port_of(target.base_url), urlsplit(target.base_url).path.rstrip("/")
    out = {}
    for kind in payloads.KINDS:
        body = payloads.request_body(kind, target.prefix)
        try:
            status, answer = http_post(port, base + payloads.request_path(kind), body)
        except (OSError, http.client.HTTPException) as err:
            out[kind] = f"{type(err).__name__}: {err}"
            continue
        problem = payloads.check_answer(kind, status, answer)
        out[kind] = "ok" if problem is None else f"{problem}: {answer[:300]!r}"
    return out


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
