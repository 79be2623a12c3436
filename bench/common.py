"""What the parts of ``run.py`` share: paths, constants, the error a failed step
raises, progress logging, and the variants and targets a run measures."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import proctree

BENCH_DIR = Path(__file__).resolve().parent
MB = 1024 * 1024
PREFIX = "openai/"  # Switchyard's id for the provider the environment configures


class BenchError(Exception):
    """A step failed; the variant is reported as failed and the run goes on."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int  # 0: direct, no Switchyard
    store: bool


@dataclass
class Target:
    """Where the load goes: the upstream itself or a Switchyard in front of it."""

    base_url: str
    prefix: str
    proc: proctree.Managed | None = None
