"""Every answer carries ``x-request-id``, as OpenAI's do: the openai SDK shows it as
``request_id`` (on an error too), and the log lines of that request carry it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest
from tests.support.fake_openai import MODEL, fake_openai
from tests.support.server import free_port, process_server

HELLO = [{"role": "user", "content": "hello"}]
OURS = re.compile(r"req_[0-9a-f]{24}")


def test_each_answer_has_its_own_id_and_the_log_names_it(tmp_path: Path) -> None:
    down = {
        "id": "down",
        "type": "openai_compatible",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "max_retries": 0,
        "discover": False,
    }
    with fake_openai() as upstream:
        config = {
            "providers": [upstream.provider_config(), down],
            "models": [{"provider_id": "down", "provider_model_id": "gone"}],
            "store": {"enabled": False},
        }
        with (
            process_server(config, tmp_path, args=("--log-level", "info")) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client,
        ):
            model = f"fake/{MODEL}"
            first = client.chat.completions.create(model=model, messages=HELLO)
            second = client.chat.completions.create(model=model, messages=HELLO)
            stream = client.chat.completions.with_raw_response.create(
                model=model, messages=HELLO, stream=True
            )
            list(stream.parse())
            listed = client.models.with_raw_response.list()
            ids = [first._request_id, second._request_id, stream.request_id, listed.request_id]
            # A route Starlette answers (a path parameter), and one it does not know.
            with pytest.raises(openai.NotFoundError) as unknown:
                client.models.retrieve("fake/nope")
            missing = httpx.get(server.url + "/v1/nope")
            # A provider that cannot be reached: a 503, logged with the id.
            with pytest.raises(openai.APIStatusError) as failed:
                client.chat.completions.create(model="down/gone", messages=HELLO)
        assert all(rid is not None and OURS.fullmatch(rid) for rid in ids), ids
        assert len(set(ids)) == 4
        assert unknown.value.request_id is not None
        assert OURS.fullmatch(unknown.value.request_id)
        assert missing.status_code == 404
        assert OURS.fullmatch(missing.headers["x-request-id"])
        assert "server" not in missing.headers  # not uvicorn's: it names a layer, not us
        assert failed.value.status_code == 503
        rid = failed.value.request_id
        assert rid is not None
        assert OURS.fullmatch(rid)
        lines = [line for line in server.log().splitlines() if rid in line]
        assert any("-> 503" in line for line in lines), server.log()[-2000:]
        assert all(line.endswith(f" [{rid}]") for line in lines)
        assert rid not in {first._request_id, second._request_id}


def test_a_clients_own_id_is_kept_when_it_is_a_plain_token(tmp_path: Path) -> None:
    with fake_openai() as upstream:
        config = {"providers": [upstream.provider_config()], "store": {"enabled": False}}
        with (
            process_server(config, tmp_path) as server,
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client,
        ):
            model = f"fake/{MODEL}"
            kept = client.chat.completions.create(
                model=model, messages=HELLO, extra_headers={"X-Request-ID": "trace-7f3a:01"}
            )
            for odd in ("two words", "x" * 129, "<b>"):
                replaced = client.chat.completions.with_raw_response.create(
                    model=model, messages=HELLO, extra_headers={"X-Request-ID": odd}
                )
                assert replaced.request_id is not None
                assert OURS.fullmatch(replaced.request_id), odd
    assert kept._request_id == "trace-7f3a:01"
