"""A pytest plugin: run your own tests against a Switchyard that replays recorded traffic.

Installed with switchyard (entry point ``switchyard`` in ``pytest11``). A test takes the
``switchyard`` fixture and points its OpenAI client at ``switchyard.base_url``::

    def test_capital(switchyard):
        client = openai.OpenAI(base_url=switchyard.base_url, api_key="unused")
        answer = client.chat.completions.create(model="together/...", messages=[...])

Record once with real keys (``pytest --record-mode record``), commit the cassettes, and
the suite replays them from then on, in CI too, without keys or network. Each test gets a
server of its own, recording into and replaying from
``<cassettes>/<test module>/<test name>.json`` (``<class>.<test name>.json`` for a test in
a class; the ``switchyard_cassette("name")`` marker picks another name, e.g. to share one
between tests).

Settings:

``--record-mode MODE`` (or ``--switchyard-record-mode``; ini ``switchyard_record_mode``)
    ``replay`` (the default), ``record``, ``record-if-missing`` or ``live``. Where
    pytest-recording is installed, ``--record-mode`` is its own: use the long name.
``--switchyard-cassettes DIR`` (ini ``switchyard_cassettes``)
    where cassettes live; by default a ``cassettes`` folder beside each test module.
ini ``switchyard_server``
    ``thread`` (the default: in the test process) or ``process`` (``switchyard run``).
fixture ``switchyard_config``
    override it (in ``conftest.py``) to return your config as a dict: providers, models.
    By default it reads the YAML file named by ``SWITCHYARD_CONFIG``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RunningSwitchyard"]

MODES = ("replay", "record", "record-if-missing", "live")


@dataclass(frozen=True, slots=True)
class RunningSwitchyard:
    """The server of one test."""

    url: str
    mode: str
    cassette: Path

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("switchyard", "Switchyard record/replay")
    # pytest-recording owns --record-mode where it is installed. Two plugins claiming
    # one option stop pytest from starting, in whichever order they load, so ours is
    # then only the prefixed one.
    names = ["--switchyard-record-mode"]
    if importlib.util.find_spec("pytest_recording") is None:
        names.insert(0, "--record-mode")
    kwargs: dict[str, Any] = {
        "dest": "switchyard_record_mode",
        "choices": MODES,
        "default": None,
        "help": "Switchyard cassettes: replay (default), record, record-if-missing or live.",
    }
    group.addoption(*names, **kwargs)
    group.addoption(
        "--switchyard-cassettes",
        dest="switchyard_cassettes",
        default=None,
        help="Directory of Switchyard cassettes (default: 'cassettes' beside each module).",
    )
    parser.addini("switchyard_record_mode", "Default record mode.", default="replay")
    parser.addini("switchyard_cassettes", "Directory of cassettes, relative to the rootdir.")
    parser.addini("switchyard_server", "'thread' (default) or 'process'.", default="thread")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "switchyard_cassette(name): the cassette this test records and replays"
    )
    mode = _record_mode(config)
    if mode not in MODES:
        raise pytest.UsageError(f"switchyard_record_mode = {mode!r}; use one of {MODES}")


def _record_mode(config: pytest.Config) -> str:
    return str(
        config.getoption("switchyard_record_mode") or config.getini("switchyard_record_mode")
    )


@pytest.fixture(scope="session")
def switchyard_record_mode(pytestconfig: pytest.Config) -> str:
    """The record mode of this run."""
    return _record_mode(pytestconfig)


@pytest.fixture(scope="session")
def _switchyard_record_session() -> str:
    """One record session for the whole test run (all xdist workers of it too): tests
    that share a cassette append to it, and only the run's first write starts it afresh."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex[:16]


@pytest.fixture(scope="session")
def switchyard_config() -> dict[str, Any]:
    """The Switchyard config as a dict; override it to name your providers."""
    import yaml

    path = os.environ.get("SWITCHYARD_CONFIG")
    if not path:
        raise pytest.UsageError(
            "the switchyard fixture needs providers: override the switchyard_config fixture "
            "in conftest.py, or set SWITCHYARD_CONFIG to a config file"
        )
    loaded = yaml.safe_load(Path(path).read_text())
    return loaded if isinstance(loaded, dict) else {}


@pytest.fixture
def switchyard_cassette(request: pytest.FixtureRequest, switchyard_record_mode: str) -> Path:
    """The cassette file of this test."""
    config = request.config
    chosen = config.getoption("switchyard_cassettes") or config.getini("switchyard_cassettes")
    base = Path(config.rootpath, chosen) if chosen else request.path.parent / "cassettes"
    folder = base / request.path.stem
    marker = request.node.get_closest_marker("switchyard_cassette")
    if marker:
        return folder / f"{_safe(str(marker.args[0]))}.json"
    # A test in a class is named with its class: tests of the same name in two classes
    # of a module must not record over each other's cassette.
    classes = request.node.nodeid.split("::")[1:-1]
    path = folder / f"{_safe('.'.join([*classes, request.node.name]))}.json"
    legacy = folder / f"{_safe(request.node.name)}.json"
    if classes and switchyard_record_mode == "replay" and not path.exists() and legacy.exists():
        return legacy  # recorded before classes were in the name (0.1.0)
    return path


# A file name holds at most 255 bytes; the lock file's (.<name>.json.lock) adds 11.
_NAME_MAX = 244


def _safe(name: str) -> str:
    """A test name as a file name: parameters kept readable, nothing that makes a path."""
    safe = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "-", name).lstrip(".-") or "cassette"
    if len(safe) > _NAME_MAX:
        # A long parameter id is cut, and a hash of the whole name keeps such cassettes
        # apart.
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        safe = f"{safe[: _NAME_MAX - len(digest) - 1]}-{digest}"
    return safe


@pytest.fixture
def switchyard(
    request: pytest.FixtureRequest,
    switchyard_config: dict[str, Any],
    switchyard_record_mode: str,
    switchyard_cassette: Path,
    _switchyard_record_session: str,
    tmp_path: Path,
) -> Iterator[RunningSwitchyard]:
    """A Switchyard serving this test, recording or replaying its cassette."""
    from switchyard.recording.harness import serve

    if switchyard_record_mode == "replay" and not switchyard_cassette.exists():
        pytest.fail(
            f"no cassette {switchyard_cassette} to replay; record it once with "
            "`pytest --record-mode record` (or record-if-missing)",
            pytrace=False,
        )
    config = dict(switchyard_config)
    config.setdefault("data_dir", str(tmp_path / "switchyard-data"))
    config["recording"] = {
        **(config.get("recording") or {}),
        "mode": switchyard_record_mode,
        "cassettes": str(switchyard_cassette.parent),
        "cassette": switchyard_cassette.stem,
        # A test replays its own cassette, not its neighbours'.
        "replay_from": "cassette",
        "session": _switchyard_record_session,
        # Tests sharing a cassette each replay what they recorded.
        "test_id": request.node.nodeid,
    }
    how = str(request.config.getini("switchyard_server") or "thread")
    with serve(config, how, tmp_path / "switchyard") as url:
        yield RunningSwitchyard(url=url, mode=switchyard_record_mode, cassette=switchyard_cassette)
