"""Importing Llama Stack's recordings into cassettes, and the ``switchyard cassettes`` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from tests.support.recorded_upstream import recordings_root

from switchyard.cli import main
from switchyard.recording.cassette import Cassette
from switchyard.recording.files import list_cassettes, load_cassette
from switchyard.recording.importer import import_llama_stack, provider_of_url

ROOT = recordings_root()
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"no recordings at {ROOT}")

# provider: (interactions, model lists, streams, errors), from the recordings' README.
EXPECTED = {
    "azure": (14, 2, 8, 0),
    "bedrock": (27, 2, 22, 0),
    "cerebras": (11, 1, 5, 0),
    "databricks": (15, 0, 4, 0),
    "fireworks": (26, 1, 7, 0),
    "gemini": (5, 5, 0, 0),
    "llama-cpp-server": (1, 1, 0, 0),
    "ollama": (259, 8, 99, 1),
    "openai": (15, 12, 3, 0),
    "tgi": (10, 0, 5, 0),
    "together": (41, 0, 8, 0),
    "vllm": (20, 4, 2, 1),
    "watsonx": (1, 1, 0, 0),
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cassette]:
    destination = tmp_path_factory.mktemp("imported")
    report = import_llama_stack(ROOT, destination)
    assert report.skipped == {}
    assert report.written == {p: counts[0] for p, counts in EXPECTED.items()}
    assert report.total == 445
    return {path.stem: load_cassette(path) for path in list_cassettes(destination)}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_every_recording_becomes_an_interaction(
    imported: dict[str, Cassette], provider: str
) -> None:
    cassette = imported[provider]
    items = cassette.interactions
    total, models, streams, errors = EXPECTED[provider]
    assert len(items) == total
    assert sum(i.request.path == "/v1/models" for i in items) == models
    assert sum(i.response.is_stream for i in items) == streams
    assert sum(i.response.status >= 400 for i in items) == errors
    assert {i.provider for i in items} == {provider}
    for interaction in items:
        assert interaction.source and interaction.source.startswith(f"llama-stack:{provider}/")
        assert interaction.request.path in {
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/models",
        }
        if interaction.response.events is not None:
            assert interaction.response.events[-1].data == "[DONE]"
            assert interaction.response.headers == {"content-type": "text/event-stream"}


def test_model_lists_come_first_largest_first(imported: dict[str, Cassette]) -> None:
    for cassette in imported.values():
        paths = [i.request.path for i in cassette.interactions]
        lists = [i for i in cassette.interactions if i.request.path == "/v1/models"]
        assert paths[: len(lists)] == ["/v1/models"] * len(lists)
        sizes = [len(i.response.body["data"]) for i in lists]
        assert sizes == sorted(sizes, reverse=True)
        assert all(i.request.method == "GET" and i.request.body is None for i in lists)


def test_bodies_are_what_went_on_the_wire(imported: dict[str, Cassette]) -> None:
    bodies = [i.request.body for i in imported["vllm"].interactions if i.request.body]
    guided = [b for b in bodies if "guided_choice" in b]
    assert guided == [
        {
            "guided_choice": ["joy", "sadness"],
            "model": "Qwen/Qwen3-0.6B",
            "prompt": "I am feeling really sad today.",
            "stream": False,
        }
    ]
    assert not [
        b
        for c in imported.values()
        for i in c.interactions
        if "extra_body" in (b := i.request.body or {})
    ]
    errors = [i for i in imported["ollama"].interactions if i.response.status >= 400]
    assert errors[0].response.body["error"]["message"] == "invalid image input"


def test_provider_from_url() -> None:
    assert provider_of_url("https://api.together.xyz/v1/v1/chat/completions") == "together"
    assert provider_of_url("http://0.0.0.0:11434/v1/v1/embeddings") == "ollama"
    assert provider_of_url("http://localhost:8000/v1/v1/models") == "vllm"
    assert provider_of_url("__databricks__/serving-endpoints/v1/embeddings") == "databricks"
    assert provider_of_url("https://x.openai.azure.com/openai/v1/chat") == "azure"
    assert provider_of_url("https://api.example.org:9000/v1") == "api-example-org-9000"


def _llama_stack_checkout(tmp_path: Path) -> Path:
    """Files laid out as in Llama Stack's repository, both generations."""
    root = tmp_path / "llama-stack" / "tests" / "integration"
    old = root / "recordings" / "responses"
    new = root / "inference" / "recordings"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    shutil.copy(ROOT / "together" / "6730dcde0b73.json", old)
    shutil.copy(ROOT / "fireworks" / "235c36771a8a.json", old)
    shutil.copy(next((ROOT / "ollama").glob("models-64a2277c*.json")), new)
    # Ollama's native API and a file that is no recording at all are skipped.
    native = json.loads(next((ROOT / "ollama").glob("*.json")).read_text())
    native["request"]["url"] = "http://0.0.0.0:11434/api/generate"
    native["request"]["endpoint"] = "/api/generate"
    (old / "0123456789ab.json").write_text(json.dumps(native))
    (new / "index.json").write_text('{"not": "a recording"}')
    return tmp_path / "llama-stack"


def test_llama_stack_layouts_are_grouped_by_provider(tmp_path: Path) -> None:
    report = import_llama_stack(_llama_stack_checkout(tmp_path), tmp_path / "out")
    assert report.written == {"fireworks": 1, "ollama": 1, "together": 1}
    assert len(report.skipped) == 2
    reasons = " ".join(report.skipped.values())
    assert "unsupported endpoint '/api/generate'" in reasons
    assert "not a Llama Stack recording" in reasons
    (models,) = load_cassette(tmp_path / "out" / "ollama.json").interactions
    assert models.request.method == "GET"
    assert models.request.path == "/v1/models"


def test_a_llama_cpp_model_list_on_8080_is_not_filed_under_tgi(tmp_path: Path) -> None:
    (recording,) = (ROOT / "llama-cpp-server").glob("models-*.json")
    layout = tmp_path / "src" / "inference" / "recordings"  # Llama Stack's own layout
    layout.mkdir(parents=True)
    shutil.copy(recording, layout / recording.name)
    assert "localhost:8080" in recording.read_text()  # the port TGI's recordings use too
    report = import_llama_stack(tmp_path / "src", tmp_path / "out")
    assert report.written == {"llama-cpp-server": 1}


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_imports_lists_and_shows(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cassettes"
    result = runner.invoke(main, ["cassettes", "import-llama-stack", str(ROOT / "vllm"), str(out)])
    assert result.exit_code == 0, result.output
    assert "20 interactions imported, 0 files skipped" in result.output
    assert (out / "vllm.json").exists()

    listing = runner.invoke(main, ["cassettes", "ls", str(out)])
    assert listing.exit_code == 0
    assert "vllm" in listing.output
    assert "GET /v1/models x4" in listing.output

    shown = runner.invoke(main, ["cassettes", "show", str(out), "--path", "/v1/completions"])
    assert shown.exit_code == 0
    assert shown.output.count("vllm POST /v1/completions -> 200") == 2
    assert '"prompt":"I am feeling really sad today."' in shown.output

    as_json = runner.invoke(main, ["cassettes", "show", str(out / "vllm.json"), "--json"])
    lines = [orjson.loads(line) for line in as_json.output.splitlines()]
    assert len(lines) == 20
    assert lines[0]["request"] == {"method": "GET", "path": "/v1/models", "headers": {}}


def test_cli_reports_a_broken_cassette_and_skips_other_json(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"version": 1, "interactions": [{}]}')
    (tmp_path / "package.json").write_text('{"name": "x"}')
    shutil.copy(next((ROOT / "vllm").glob("*.json")), tmp_path / "raw.json")
    import_llama_stack(ROOT / "vllm", tmp_path)
    result = CliRunner().invoke(main, ["cassettes", "ls", str(tmp_path)])
    assert result.exit_code == 1  # a broken cassette is an error; the rest is listed
    assert "broken.json: not a Switchyard cassette" in result.output
    assert "GET /v1/models x4" in result.output
    assert "skipped" in result.output and "package.json: not a cassette" in result.output
    assert "raw.json: a Llama Stack recording" in result.output
    assert "import-llama-stack" in result.output
    (tmp_path / "broken.json").unlink()
    assert CliRunner().invoke(main, ["cassettes", "ls", str(tmp_path)]).exit_code == 0
    shown = CliRunner().invoke(main, ["cassettes", "show", str(tmp_path / "raw.json")])
    assert shown.exit_code == 1 and "import-llama-stack" in shown.output


def test_importing_again_from_a_copy_writes_the_same_cassettes(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "vllm", tmp_path / "copy" / "vllm")  # new modification times
    import_llama_stack(ROOT / "vllm", tmp_path / "a")
    import_llama_stack(tmp_path / "copy" / "vllm", tmp_path / "b")
    first = (tmp_path / "a" / "vllm.json").read_text()
    assert first == (tmp_path / "b" / "vllm.json").read_text()
    assert '"recorded_at": null' in first
