"""The server raises its limit on open files at start: a soft limit of 256 (a hard one
above it) would otherwise cap it at about 120 requests in flight, each holding its
client's connection and its provider's."""

from __future__ import annotations

import asyncio
import re
import resource
from pathlib import Path

import httpx
import pytest
from tests.support.fake_openai import MODEL, fake_openai
from tests.support.server import process_server

IN_FLIGHT = 300
# The server starts with a soft limit of 256 under this hard one (never above the hard
# limit the tests run under, which a process may not raise).
_HARD_NOW = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
HARD = 8192 if _HARD_NOW == resource.RLIM_INFINITY else min(8192, _HARD_NOW)

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/limits").exists() or HARD < 4 * IN_FLIGHT,
    reason="reads the server's limits from /proc; needs a hard limit of 1,200 files",
)


def _soft_limit(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    found = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert found is not None, limits
    return int(found[1])


async def _all_at_once(base_url: str) -> list[int]:
    body = {
        "model": f"fake/{MODEL}",
        "messages": [{"role": "user", "content": "hi"}],
        "fake_delay": 1.0,  # every request is in flight at the same time
    }
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post("/chat/completions", json=body) for _ in range(IN_FLIGHT)),
            return_exceptions=True,
        )
    return [a.status_code if isinstance(a, httpx.Response) else 0 for a in answers]


def test_a_low_soft_limit_is_raised_so_many_requests_are_served_at_once(
    tmp_path: Path,
) -> None:
    with fake_openai() as upstream:
        config = {"providers": [upstream.provider_config()]}
        with process_server(config, tmp_path, open_files=(256, HARD)) as server:
            assert server.proc is not None
            assert _soft_limit(server.proc.pid) == HARD
            statuses = asyncio.run(_all_at_once(server.base_url))
        assert statuses == [200] * IN_FLIGHT, sorted(set(statuses))
        assert upstream.calls == IN_FLIGHT
        assert "may open only" not in server.log()


def test_a_hard_limit_too_low_to_raise_is_named_at_start(tmp_path: Path) -> None:
    with process_server(None, tmp_path, open_files=(512, 512)) as server:
        assert httpx.get(server.base_url + "/health").status_code == 200
    assert "may open only 512 files" in server.log()
    assert "about 256 requests at once" in server.log()
