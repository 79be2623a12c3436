"""Switchyard's own ids for stored objects.

Providers' ids repeat (across providers, and every replay of a recording returns the
same one), so each completion gets its own. The hex millisecond prefix makes ids sort
by creation time, which keeps the store's index appends cheap.
"""

from __future__ import annotations

import secrets
import time


def new_completion_id() -> str:
    return f"chatcmpl-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"
