"""Matching requests to recordings, ordered replay, and what a miss says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from switchyard.errors import ConfigError, ReplayMissError
from switchyard.recording.cassette import Cassette, Interaction, RecordedRequest, RecordedResponse
from switchyard.recording.files import ensure_cassette, load_cassette, save_cassette
from switchyard.recording.library import CassetteLibrary
from switchyard.recording.matching import (
    canonical,
    canonical_body,
    differences,
    ignore_tree,
    match_key,
)

CHAT = "/v1/chat/completions"


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def _interaction(body: Any, answer: Any, provider: str = "p", path: str = CHAT) -> Interaction:
    method = "GET" if body is None else "POST"
    response = RecordedResponse(200, body=answer)
    return Interaction(provider, RecordedRequest(method, path, body), response)


def _library(tmp_path: Path, *cassettes: Cassette, **kwargs: Any) -> CassetteLibrary:
    for cassette in cassettes:
        save_cassette(cassette, tmp_path / f"{cassette.name}.json")
    return CassetteLibrary(tmp_path, "default", **kwargs)


def _ask(library: CassetteLibrary, body: Any, provider: str = "p", path: str = CHAT) -> Any:
    found = library.find(provider, RecordedRequest("POST" if body else "GET", path, body))
    return None if found is None else found.response.body


# -- canonical form ------------------------------------------------------------------------


def test_canonical_sorts_rounds_and_drops_nulls() -> None:
    body = {"b": 1.0, "a": [{"y": None, "x": 0.1234567891}], "c": None}
    assert canonical(body) == {"a": [{"x": 0.123457}], "b": 1}
    assert list(canonical(body)) == ["a", "b"]
    assert canonical_body({"stream": False, "n": 1}) == {"n": 1}
    assert canonical_body({"stream": True}) == {"stream": True}


def test_floats_match_after_rounding_and_whole_floats_as_ints() -> None:
    recorded = match_key("POST", CHAT, _chat("x", temperature=0.7, top_p=1))
    assert match_key("post", CHAT, _chat("x", temperature=0.70000001, top_p=1.0)) == recorded
    assert match_key("POST", CHAT, _chat("x", temperature=0.71, top_p=1)) != recorded
    # Beyond 64 bits a whole float stays a float (an int there is not JSON orjson writes).
    assert match_key("POST", CHAT, {"maximum": 1e20}) == match_key(
        "POST", CHAT, {"maximum": 1.0e20}
    )
    assert canonical({"a": -1e19, "b": 2.0**62}) == {"a": -1e19, "b": 2**62}


def test_ignored_fields_are_dotted_paths_through_lists() -> None:
    tree = ignore_tree(["user", "seed", "messages.name", "metadata.trace.id"])
    body = _chat("x", user="u1", seed=4, metadata={"trace": {"id": 1, "keep": 2}})
    body["messages"][0]["name"] = "alice"
    assert canonical(body, tree) == {
        "messages": [{"content": "x", "role": "user"}],
        "metadata": {"trace": {"keep": 2}},
        "model": "m",
    }
    # A path as a miss names it, with list indexes, means the same field in every item.
    assert ignore_tree(["messages[0].name", "tools[].function.strict"]) == ignore_tree(
        ["messages.name", "tools.function.strict"]
    )
    # An item of a list cannot be left out alone: input[1] would ignore all of input.
    with pytest.raises(ConfigError, match=r"'input\[1\]' names an item"):
        ignore_tree(["input[1]"])
    # A field ignored whole wins over a path below it, in either order.
    assert ignore_tree(["a", "a.b"]) == {"a": None}
    assert ignore_tree(["a.b", "a"]) == {"a": None}


def test_differences_are_dotted_paths() -> None:
    recorded = canonical(_chat("Hello", temperature=0.5, tools=[{"a": 1}]))
    got = canonical(_chat("Hi", tools=[{"a": 1}, {"b": 2}]))
    found = {d.path: d for d in differences(recorded, got)}
    assert list(found) == ["messages[0].content", "temperature", "tools[1]"]
    assert found["temperature"].describe() == "temperature (recorded 0.5, got absent)"
    assert found["tools[1]"].describe() == 'tools[1] (recorded absent, got {"b":2})'
    assert differences(1, True) == differences(1, True) != []  # bool is not 1


# -- the library ---------------------------------------------------------------------------


def test_identical_requests_replay_in_recorded_order(tmp_path: Path) -> None:
    cassette = Cassette(
        "default",
        [
            _interaction(_chat("x"), "first"),
            _interaction(_chat("y"), "other"),
            _interaction(_chat("x"), "second"),
        ],
    )
    library = _library(tmp_path, cassette)
    assert [_ask(library, _chat("x")) for _ in range(3)] == ["first", "second", "first"]
    assert _ask(library, _chat("y")) == "other"
    # record-if-missing asks not to start over: the third is recorded instead.
    again = _library(tmp_path)
    request = RecordedRequest("POST", CHAT, _chat("x"))
    asked = [again.find("p", request, can_record=True) for _ in "123"]
    assert [None if a is None else a.response.body for a in asked] == ["first", "second", None]


def test_record_if_missing_records_a_tests_own_answer_rather_than_borrow_one(
    tmp_path: Path,
) -> None:
    borrowed = _interaction(_chat("x"), "a's")
    borrowed.test_id = "t.py::test_a"
    cassette = Cassette("default", [borrowed, _interaction(_chat("y"), "anyone's")])
    save_cassette(cassette, tmp_path / "default.json")
    for can_record, expected in ((True, [None, "anyone's"]), (False, ["a's", "anyone's"])):
        library = CassetteLibrary(tmp_path, test_id="t.py::test_b")
        asked = [
            library.find("p", RecordedRequest("POST", CHAT, _chat(text)), can_record=can_record)
            for text in "xy"
        ]
        assert [None if a is None else a.response.body for a in asked] == expected


def test_requests_differing_only_in_ignored_fields_replay_in_order(tmp_path: Path) -> None:
    cassette = Cassette(
        "default",
        [_interaction(_chat("x", seed=1), "first"), _interaction(_chat("x", seed=2), "second")],
        ignore_fields=["seed"],
    )
    library = _library(tmp_path, cassette)
    assert [_ask(library, _chat("x", seed=n)) for n in (7, 8, 9)] == ["first", "second", "first"]


def test_a_doubled_v1_in_a_cassette_matches_v1(tmp_path: Path) -> None:
    written = _interaction(_chat("x"), "doubled", path="/v1/v1/chat/completions")
    library = _library(tmp_path, Cassette("default", [written]))
    assert _ask(library, _chat("x")) == "doubled"
    assert "path" not in library.miss("p", RecordedRequest("POST", CHAT, _chat("y"))).message


def test_the_asking_provider_is_preferred_then_any(tmp_path: Path) -> None:
    library = _library(
        tmp_path,
        Cassette("a", [_interaction(_chat("x"), "from a", "a")]),
        Cassette("b", [_interaction(_chat("x"), "from b", "b")]),
    )
    assert _ask(library, _chat("x"), "b") == "from b"
    assert _ask(library, _chat("x"), "a") == "from a"
    assert _ask(library, _chat("x"), "c") == "from a"  # named cassettes in order


def test_model_lists_only_replay_to_their_own_provider(tmp_path: Path) -> None:
    library = _library(
        tmp_path, Cassette("a", [_interaction(None, {"data": []}, "a", "/v1/models")])
    )
    assert _ask(library, None, "a", "/v1/models") == {"data": []}
    assert _ask(library, None, "b", "/v1/models") is None
    miss = library.miss("b", RecordedRequest("GET", "/v1/models"))
    assert 'provider (recorded "a", got "b")' in miss.message


def test_a_model_list_replays_the_first_recorded_every_time(tmp_path: Path) -> None:
    # Asked at start and at every refresh: the listed models must not change meanwhile.
    lists = [_interaction(None, {"data": [n]}, "a", "/v1/models") for n in (1, 2, 3)]
    lists[0].response.status = 503  # the provider was down at the first listing
    library = _library(tmp_path, Cassette("a", lists))
    assert [_ask(library, None, "a", "/v1/models") for _ in "123"] == [{"data": [2]}] * 3


def test_ignore_fields_globally_and_per_cassette(tmp_path: Path) -> None:
    own = Cassette("default", [_interaction(_chat("x", seed=1), "seeded")], ignore_fields=["seed"])
    other = Cassette("other", [_interaction(_chat("y", user="u"), "user")])
    library = _library(tmp_path, own, other, ignore_fields=["user"])
    assert _ask(library, _chat("x", seed=99)) == "seeded"
    assert _ask(library, _chat("y", user="someone else")) == "user"
    assert _ask(library, _chat("y", user="u", seed=5)) is None  # seed is ignored in one only


def test_replay_from_the_named_cassette_only(tmp_path: Path) -> None:
    library = _library(
        tmp_path,
        Cassette("default", [_interaction(_chat("x"), "mine")]),
        Cassette("neighbour", [_interaction(_chat("y"), "theirs")]),
        load="cassette",
    )
    assert _ask(library, _chat("x")) == "mine"
    assert _ask(library, _chat("y")) is None


# -- misses --------------------------------------------------------------------------------


def test_a_miss_names_the_cassette_the_closest_request_and_the_differences(
    tmp_path: Path,
) -> None:
    cassette = Cassette(
        "default",
        [
            _interaction(_chat("Tell me a joke"), "joke"),
            _interaction(_chat("What is the capital of France?", temperature=0.2), "Paris"),
            _interaction(
                {"model": "m", "input": "What is the capital of Spain?"}, [], "p", "/v1/e"
            ),
        ],
    )
    library = _library(tmp_path, cassette)
    request = RecordedRequest("POST", CHAT, _chat("What is the capital of Spain?"))
    error = library.miss("p", request)
    assert isinstance(error, ReplayMissError)
    assert error.status == 404
    assert error.code == "replay_miss"
    assert error.cassette == str(tmp_path / "default.json")
    assert error.closest == f"{tmp_path / 'default.json'} interactions[1]"
    assert error.differences == ("messages[0].content", "temperature")
    message = error.message
    assert "No recording for POST /v1/chat/completions (provider 'p')" in message
    assert str(tmp_path / "default.json") in message
    assert (
        'messages[0].content (recorded "What is the capital of France?", '
        'got "What is the capital of Spain?")' in message
    )
    assert "temperature (recorded 0.2, got absent)" in message
    assert error.to_dict()["error"]["type"] == "invalid_request_error"


def test_a_miss_in_an_empty_directory_says_so(tmp_path: Path) -> None:
    library = CassetteLibrary(tmp_path, "default")
    error = library.miss("p", RecordedRequest("POST", CHAT, _chat("x")))
    assert "Nothing is recorded there" in error.message
    assert error.closest is None


def test_a_miss_lists_at_most_a_few_differences(tmp_path: Path) -> None:
    recorded = {f"field{i}": i for i in range(10)}
    library = _library(tmp_path, Cassette("default", [_interaction(recorded, "x")]))
    error = library.miss("p", RecordedRequest("POST", CHAT, {}))
    assert "differs in 10 fields" in error.message
    assert "and 4 more" in error.message


def test_a_broken_cassette_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "default.json").write_text("{}")
    with pytest.raises(Exception, match=r"cannot replay: .*default\.json"):
        CassetteLibrary(tmp_path, "default")
    # Another JSON file beside the cassettes is skipped; a broken cassette is not.
    (tmp_path / "default.json").unlink()
    save_cassette(Cassette("other", [_interaction(_chat("x"), "a")]), tmp_path / "other.json")
    (tmp_path / "package.json").write_text('{"name": "x"}')
    assert _ask(CassetteLibrary(tmp_path, "default"), _chat("x")) == "a"
    (tmp_path / "broken.json").write_text('{"version": 1, "interactions": [{}]}')
    with pytest.raises(ConfigError, match=r"cannot replay: .*broken\.json"):
        CassetteLibrary(tmp_path, "default")


def test_a_miss_in_a_directory_without_the_named_cassette_names_the_ones_there(
    tmp_path: Path,
) -> None:
    library = _library(tmp_path, Cassette("together", [_interaction(_chat("x"), "a")]))
    message = library.miss("p", RecordedRequest("POST", CHAT, _chat("y"))).message
    assert f"1 cassette in {tmp_path}" in message
    assert "default.json" not in message


def test_record_if_missing_records_its_own_over_another_providers(tmp_path: Path) -> None:
    imported = _interaction(_chat("y"), "imported", "a")
    imported.source = "llama-stack/x.json"
    library = _library(tmp_path, Cassette("a", [_interaction(_chat("x"), "from a", "a"), imported]))
    ask = RecordedRequest("POST", CHAT, _chat("x"))
    assert library.find("b", ask, can_record=True) is None  # vLLM's answer is not Ollama's
    assert _ask(library, _chat("x"), "b") == "from a"  # replay has nothing better
    found = library.find("b", RecordedRequest("POST", CHAT, _chat("y")), can_record=True)
    assert found is not None and found.response.body == "imported"


def test_record_if_missing_lists_models_again_where_only_failures_were_recorded(
    tmp_path: Path,
) -> None:
    refused = _interaction(None, {"error": {"message": "bad key"}}, "a", "/v1/models")
    refused.response.status = 401
    library = _library(tmp_path, Cassette("a", [refused]))
    listing = RecordedRequest("GET", "/v1/models")
    assert library.find("a", listing, can_record=True) is None
    found = library.find("a", listing)  # replay: the failure is all there is
    assert found is not None and found.response.status == 401


async def test_record_mode_writes_each_providers_model_list_once(tmp_path: Path) -> None:
    library = CassetteLibrary(tmp_path, "rec", load="none", session="s")
    down = _interaction(None, {"error": {}}, "a", "/v1/models")
    down.response.status = 503
    for _ in "12":  # a failure (a refused key, retried every few seconds) is written once,
        await library.record(down, replayable=False)  # and a success after it
    for provider in "aab":
        await library.record(
            _interaction(None, {"data": []}, provider, "/v1/models"), replayable=False
        )
    await library.record(_interaction(_chat("x"), "chat", "a"), replayable=False)
    written = load_cassette(tmp_path / "rec.json").interactions
    assert [(i.provider, i.response.status) for i in written] == [
        ("a", 503),
        ("a", 200),
        ("b", 200),
        ("a", 200),
    ]


def test_a_difference_deep_in_a_long_prompt_is_shown_where_it_is() -> None:
    system = "You are a helpful assistant. " * 6
    found = differences(system + "Capital of Spain?", system + "Capital of France?")
    assert found[0].describe() == (
        f'body, from character {len(system) + 11} (recorded ..."sistant. Capital of Spain?", '
        'got ..."sistant. Capital of France?")'
    )


def test_recording_leaves_a_cassette_that_is_there_untouched(tmp_path: Path) -> None:
    # Not even its lock file: a read-only checkout's cassettes replay (record-if-missing
    # finds them all there).
    path = save_cassette(
        Cassette("default", [_interaction(_chat("x"), "kept")]), tmp_path / "default.json"
    )
    before = path.read_bytes()
    ensure_cassette(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.json"]
    ensure_cassette(tmp_path / "new.json")
    assert load_cassette(tmp_path / "new.json").interactions == []
