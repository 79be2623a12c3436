"""A connection to a provider that fails because this process has no file descriptor
left is a 503 that says so, not "check the provider's base_url"."""

from __future__ import annotations

import socket
import subprocess
import sys

SCRIPT = """
import asyncio, os, resource, sys
from switchyard.errors import UpstreamUnavailableError
from switchyard.upstream import HttpTransport
from switchyard.upstream.base import UpstreamRequest

async def main() -> None:
    transport = HttpTransport(timeout=5.0, connect_timeout=5.0)
    request = UpstreamRequest(
        "p", "POST", "http://127.0.0.1:%d/v1/chat/completions", content=b"{}"
    )
    open_now = len(os.listdir("/proc/self/fd")) - 1  # less listdir's own
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, hard))
    try:
        await transport.send(request)
    except UpstreamUnavailableError as err:
        print(err.status, err.unsent, err.message)
    await transport.aclose()

asyncio.run(main())
"""


def test_no_file_descriptor_left_is_a_503_that_names_the_limit() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # would accept, if asked
        port = listener.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-c", SCRIPT % port],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 0, ran.stderr
    status, unsent, message = ran.stdout.strip().split(" ", 2)
    assert (status, unsent) == ("503", "True")
    assert "run out of file descriptors (Too many open files)" in message
    assert "ulimit -n" in message
    assert "base_url" not in message
