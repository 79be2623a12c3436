"""The pytest plugin, as a user's own suite sees it: record once, then replay offline."""

from __future__ import annotations

import gc
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.recorded_upstream import RecordedUpstream, exchanges_for, recordings_root

from switchyard.recording.cassette import Interaction, RecordedRequest, RecordedResponse
from switchyard.recording.files import append_interaction, load_cassette
from switchyard.recording.harness import serve_in_thread
from switchyard.recording.pytest_plugin import _safe

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.skipif(not recordings_root().is_dir(), reason="no shared recordings")

SECRET = "sk-pytest-SECRET"

CONFTEST = f"""
import os
import pytest

@pytest.fixture(scope="session")
def switchyard_config():
    return {{
        "providers": [{{
            "id": "together",
            "type": "together",
            "api_key": "{SECRET}",
            "base_url": os.environ.get("UPSTREAM_URL", "https://api.together.xyz") + "/v1",
        }}],
        "store": {{"enabled": False}},
    }}
"""

USER_TEST = """
import openai

MODEL = "together/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free"

def test_sun(switchyard):
    with openai.OpenAI(base_url=switchyard.base_url, api_key="unused", max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What's the name of the %s in latin?"}],
            stream=True,
        )
        chunks = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(chunks) > 2
    assert "Sol" in "".join(chunks)
"""


def _user_suite(pytester: pytest.Pytester, body: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=USER_TEST % body)
    pytester.makeini(INI)


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def upstream() -> Iterator[RecordedUpstream]:
    server = RecordedUpstream(exchanges_for("together"))
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def test_record_then_replay_without_the_provider(
    pytester: pytest.Pytester, upstream: RecordedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_suite(pytester, "Sun")
    cassette = pytester.path / "cassettes" / "test_user" / "test_sun.json"

    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    recorded = pytester.runpytest("--record-mode", "record")
    recorded.assert_outcomes(passed=1)
    assert len(upstream.requests) == 2  # the model list, then the chat
    text = cassette.read_text()
    assert "What's the name of the Sun in latin?" in text
    assert SECRET not in text

    # The provider is gone; replay (the default) still passes.
    monkeypatch.delenv("UPSTREAM_URL")
    upstream.stop_thread()
    pytester.runpytest().assert_outcomes(passed=1)


def test_replay_misses_and_missing_cassettes_are_explained(pytester: pytest.Pytester) -> None:
    _user_suite(pytester, "Moon")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no cassette*test_sun.json to replay*--record-mode record*"])

    cassette = pytester.path / "cassettes" / "test_user" / "test_sun.json"
    cassette.parent.mkdir(parents=True)
    cassette.write_text('{"version": 1, "name": "test_sun", "interactions": []}')
    result = pytester.runpytest("--switchyard-record-mode", "replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No recording for POST /v1/chat/completions*test_sun.json*"])


NO_PROVIDER_CALL = """
import urllib.error, urllib.request

def test_refused_by_switchyard_itself(switchyard):
    request = urllib.request.Request(
        switchyard.base_url + "/chat/completions", data=b'{"messages": []}', method="POST"
    )
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as err:
        assert err.code == 400
    else:
        raise AssertionError("not refused")
"""


def test_a_test_that_calls_no_provider_records_an_empty_cassette_and_replays(
    pytester: pytest.Pytester,
) -> None:
    # Nothing reaches a provider (not even a model list): record must still leave a
    # cassette, or replay would refuse the test and ask to record what cannot be.
    pytester.makeconftest(
        CONFTEST.replace('"type": "together",', '"type": "together", "discover": False,')
    )
    pytester.makepyfile(test_user=NO_PROVIDER_CALL)
    pytester.makeini(INI)
    pytester.runpytest("--record-mode", "record").assert_outcomes(passed=1)
    cassette = pytester.path / "cassettes" / "test_user" / "test_refused_by_switchyard_itself.json"
    assert load_cassette(cassette).interactions == []
    pytester.runpytest().assert_outcomes(passed=1)


def test_tests_of_one_name_in_two_classes_get_a_cassette_each(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_names="""
import pytest

class TestA:
    def test_x(self, switchyard_cassette):
        assert switchyard_cassette.name == "TestA.test_x.json"

class TestB:
    @pytest.mark.parametrize("n", [1])
    def test_x(self, switchyard_cassette, n):
        assert switchyard_cassette.name == "TestB.test_x[1].json"

def test_x(switchyard_cassette):
    assert switchyard_cassette.name == "test_x.json"
    assert switchyard_cassette.parent.name == "test_names"

class TestC:
    def test_old(self, switchyard_cassette, switchyard_record_mode):
        # Recorded before classes were in the name: replayed from there, re-recorded anew.
        expected = "test_old.json" if switchyard_record_mode == "replay" else "TestC.test_old.json"
        assert switchyard_cassette.name == expected
"""
    )
    legacy = pytester.path / "cassettes" / "test_names" / "test_old.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text('{"version": 1, "name": "test_old", "interactions": []}')
    pytester.makeini(INI)
    pytester.runpytest().assert_outcomes(passed=4)
    pytester.runpytest("--record-mode", "record", "-k", "TestC").assert_outcomes(passed=1)


def test_a_wrong_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "switchyard_record_mode = recrod\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*switchyard_record_mode = 'recrod'*"])


def test_tests_sharing_a_cassette_all_keep_their_recordings(
    pytester: pytest.Pytester, upstream: RecordedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST)
    shared = USER_TEST.replace(
        "def test_sun(", '@pytest.mark.switchyard_cassette("shared")\ndef test_sun('
    )
    pytester.makepyfile(
        test_user="import pytest\n"
        + shared % "Sun"
        + shared.replace("test_sun", "test_moon") % "Moon"
    )
    pytester.makeini(INI)
    monkeypatch.setenv("UPSTREAM_URL", upstream.url)
    pytester.runpytest("--record-mode", "record").assert_outcomes(passed=1, failed=1)
    text = (pytester.path / "cassettes" / "test_user" / "shared.json").read_text()
    # Recorded by two tests of one run: the second appended, it did not start afresh.
    assert "Sun in latin" in text and "Moon in latin" in text
    monkeypatch.delenv("UPSTREAM_URL")
    upstream.stop_thread()
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1, failed=1)  # the Moon answer has no "Sol" in it
    assert (
        "replay_miss" not in replayed.stdout.str() and "No recording" not in replayed.stdout.str()
    )


def test_a_long_test_name_makes_a_file_name_that_fits() -> None:
    ids = [f"test_x[{'long-parameter-' * 30}{end}]" for end in "ab"]
    names = [_safe(i) for i in ids]
    assert all(len(f".{n}.json.lock") <= 255 for n in names)
    assert names[0] != names[1]  # cut alike, kept apart by the hash of the whole id
    assert _safe("test_x[a b]") == "test_x[a-b]"  # short ones as before


def test_a_long_test_names_cassette_is_written(tmp_path: Path) -> None:
    name = _safe(f"test_x[{'long-parameter-' * 30}]")
    cassette = tmp_path / f"{name}.json"
    request = RecordedRequest("POST", "/v1/chat/completions", {"model": "m"})
    answer = RecordedResponse(200, {}, body={"ok": True})
    append_interaction(cassette, Interaction("p", request, answer), "session")
    assert len(load_cassette(cassette).interactions) == 1


def test_pytest_recording_keeps_its_record_mode_option(pytester: pytest.Pytester) -> None:
    # A stand-in for pytest-recording, which claims --record-mode in a group of its own.
    pytester.makepyfile(
        pytest_recording="""
def pytest_addoption(parser):
    parser.getgroup("recording").addoption("--record-mode", dest="vcr_mode", default="none")
"""
    )
    pytester.makepyfile(
        test_modes="""
def test_modes(pytestconfig, switchyard_record_mode):
    assert pytestconfig.getoption("vcr_mode") == "once"
    assert switchyard_record_mode == "record"
"""
    )
    pytester.syspathinsert()
    pytester.makeini(INI)
    result = pytester.runpytest(
        "-p", "pytest_recording", "--record-mode=once", "--switchyard-record-mode=record"
    )
    result.assert_outcomes(passed=1)


SHARED_TESTS = """
import openai
import pytest

def ask(switchyard):
    with openai.OpenAI(base_url=switchyard.base_url, api_key="unused", max_retries=0) as client:
        answer = client.chat.completions.create(
            model="together/m", messages=[{"role": "user", "content": "Hi"}]
        )
    return answer.choices[0].message.content

@pytest.mark.switchyard_cassette("shared")
def test_a(switchyard):
    assert ask(switchyard) == "FIRST"

@pytest.mark.switchyard_cassette("shared")
def test_b(switchyard):
    assert ask(switchyard) == "SECOND"
"""


def test_tests_sharing_a_cassette_replay_their_own_answers(pytester: pytest.Pytester) -> None:
    def chat(text: str, test: str) -> Interaction:
        request = RecordedRequest(
            "POST",
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        )
        message = {"role": "assistant", "content": text}
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        return Interaction("together", request, RecordedResponse(200, {}, body=body), test_id=test)

    models = RecordedResponse(
        200, {}, body={"object": "list", "data": [{"id": "m", "object": "model"}]}
    )
    cassette = pytester.path / "cassettes" / "test_shared" / "shared.json"
    for interaction in (
        Interaction("together", RecordedRequest("GET", "/v1/models"), models),
        chat("FIRST", "test_shared.py::test_a"),
        chat("SECOND", "test_shared.py::test_b"),
    ):
        append_interaction(cassette, interaction)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shared=SHARED_TESTS)
    pytester.makeini(INI)
    pytester.runpytest().assert_outcomes(passed=2)
    # Alone, or in the other order, each still gets what it recorded.
    pytester.runpytest("-k", "test_b").assert_outcomes(passed=1)
    pytester.runpytest("test_shared.py::test_b", "test_shared.py::test_a").assert_outcomes(passed=2)


def test_a_server_in_a_thread_of_the_test_process_freezes_nothing() -> None:
    # gc.freeze() belongs to a server that owns its process; in the test process it kept
    # every app the plugin started, and their replay positions, for good.
    before = gc.get_freeze_count()
    with serve_in_thread({"store": {"enabled": False}}) as url:
        urllib.request.urlopen(url + "/v1/health", timeout=5).close()
    assert gc.get_freeze_count() == before
