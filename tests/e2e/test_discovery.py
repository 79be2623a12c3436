"""A provider down at start does not stop the server; it is listed once it is back."""

from __future__ import annotations

import time

import httpx
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.server import free_port, thread_server


def test_down_provider_is_retried_on_refresh() -> None:
    port = free_port()
    config = {
        "server": {"model_refresh_interval": 0.3, "discovery_timeout": 2},
        "providers": [
            {
                "id": "late",
                "type": "openai_compatible",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "max_retries": 0,
                "connect_timeout": 0.5,
            },
            {"id": "st", "type": "sentence-transformers"},
        ],
        "models": [{"provider_id": "late", "provider_model_id": "declared", "aliases": ["d"]}],
    }
    with thread_server(config) as server:
        ids = [m["id"] for m in httpx.get(server.base_url + "/models").json()["data"]]
        assert ids == ["late/declared", "st/all-MiniLM-L6-v2"]  # declared ones only
        health = httpx.get(server.base_url + "/providers/late").json()["health"]
        assert health["status"] == "Error" and "cannot be reached" in health["message"]

        upstream = FaultyUpstream(port=port).start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ids = [m["id"] for m in httpx.get(server.base_url + "/models").json()["data"]]
                if "late/ok" in ids:
                    break
                time.sleep(0.1)
            assert "late/ok" in ids and "late/declared" in ids
            assert httpx.get(server.base_url + "/providers/late").json()["health"]["status"] == "OK"
            alias = httpx.get(server.base_url + "/models/d").json()
            assert (
                alias["id"] == "d"
                and alias["custom_metadata"]["provider_resource_id"] == "declared"
            )
        finally:
            upstream.stop()
