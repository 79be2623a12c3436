"""Metrics shared by several workers (``metrics.py``): a dead worker's live gauges leave."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard import metrics


def test_live_gauges_of_workers_that_died_leave_the_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROCESS_DIR, str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(gone.stdout)  # a process that has exited, as a killed worker has
    for pid in (dead, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    metrics._forget_dead_workers()
    left = sorted(p.name for p in tmp_path.iterdir())
    # Its counters still count (what it did happened); its gauge, a present state, goes.
    assert left == sorted(
        [f"counter_{dead}.db", f"counter_{os.getpid()}.db", f"gauge_livesum_{os.getpid()}.db"]
    )


def _version_with_metrics_dir(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, metrics.MULTIPROCESS_DIR: str(directory)}
    return subprocess.run(
        [sys.executable, "-m", "switchyard", "--version"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_metrics_directory_not_made_yet_is_made(tmp_path: Path) -> None:
    wanted = tmp_path / "not" / "yet"
    result = _version_with_metrics_dir(wanted)
    assert result.returncode == 0, result.stderr
    assert "switchyard" in result.stdout and wanted.is_dir()


def test_a_metrics_directory_that_cannot_be_made_is_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _version_with_metrics_dir(blocker / "sub")
    assert result.returncode == 0, result.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr and "ignoring it" in result.stderr
    assert "Traceback" not in result.stderr
