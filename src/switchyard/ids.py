"""Switchyard's own ids for stored objects.

Providers' ids repeat (across providers, and every replay of a recording returns the
same one), so each completion gets its own. The hex millisecond prefix makes ids sort
by creation time, which keeps the store's index appends cheap.
"""

from __future__ import annotations

import random
import time


def new_completion_id() -> str:
    # random's generator, not os.urandom: an id must be unique, not unguessable, and
    # this skips a getrandom syscall per request. It is seeded from the OS at start and
    # reseeded in every forked child, so workers never share a sequence.
    return f"chatcmpl-{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"
