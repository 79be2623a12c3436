"""Switchyard's own ids for stored objects.

Providers' ids repeat (across providers, and every replay of a recording returns the
same one), so each completion gets its own. The hex millisecond prefix makes ids sort
by creation time, which keeps the store's index appends cheap.
"""

from __future__ import annotations

import os
import random
import re
import time

# Our own generator, not os.urandom: an id must be unique, not unguessable, and this
# skips a getrandom syscall per request. Seeded from the OS, reseeded in every forked
# child so that workers never share a sequence, and private so that code seeding the
# global ``random`` (a plugin, a test) cannot make ids repeat.
_RANDOM = random.Random()
os.register_at_fork(after_in_child=_RANDOM.seed)


def new_completion_id(started_ns: int | None = None) -> str:
    """An id that sorts by ``started_ns`` (now if None), the time its row is listed by:
    a listing resumes from it after its row is deleted (``store/queries.py``)."""
    millis = (time.time_ns() if started_ns is None else started_ns) // 1_000_000
    return f"chatcmpl-{millis:012x}{_RANDOM.getrandbits(64):016x}"


# A request id worth passing on as it is (a client's, a provider's): a plain token, short
# enough for a log line, that can hold nothing a header or a log could be misread by.
PLAIN_TOKEN = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")

_COMPLETION_ID = re.compile(r"chatcmpl-([0-9a-f]{12})[0-9a-f]{16}")


def id_millis(completion_id: str) -> int | None:
    """When an id of ours was made (ms since the epoch); None for any other id."""
    match = _COMPLETION_ID.fullmatch(completion_id)
    return None if match is None else int(match.group(1), 16)
