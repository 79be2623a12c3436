"""Helpers for store tests: stores, finished calls, and waiting for a condition."""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from switchyard.config import config_from_dict
from switchyard.sink import StoredCall
from switchyard.store import InferenceStore, open_store


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 30.0
) -> None:
    """Return once ``check()`` is true; an AssertionError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def make_store(url: str, data_dir: Path | None = None, **settings: Any) -> InferenceStore:
    """A store opened on ``url``; its data directory (for saved completions) is a new
    one unless ``data_dir`` is given, so no test sees what another one saved."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="switchyard-data-"))
    raw = {"data_dir": str(data_dir), "store": {"url": url, **settings}}
    return await open_store(config_from_dict(raw, "<test>"))


def call(
    n: int = 0,
    *,
    model: str = "fake/gpt-fake",
    started: float | None = None,
    metadata: dict[str, str] | None = None,
    messages: list[dict[str, Any]] | None = None,
    completion_id: str | None = None,
) -> StoredCall:
    """A finished non-streaming call whose answer is ``answer <n>``."""
    started = time.time() if started is None else started
    body: dict[str, Any] = {
        "model": model,
        "messages": messages or [{"role": "user", "content": f"question {n}"}],
        "temperature": 0.5,
    }
    if metadata is not None:
        body["metadata"] = metadata
    completion = {
        "id": completion_id or f"chatcmpl-test-{n:06d}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer {n}"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    return StoredCall(
        body, "fake", started, started + 0.25, completion=completion, provider_completion_id="p-1"
    )
