"""The writer process's wire format: 8 bytes of length (big-endian), then a marshal.

Only a worker and the writer process it started talk this way, over their own pipes,
with the same interpreter (``sys.executable``), so marshal's format, which may change
between Python versions, is the same at both ends. A record is a tuple of bytes,
strings, numbers and None, which marshal takes 2.3x faster than pickle (no memo
table; bench/NOTES.md, section 16).
"""

from __future__ import annotations

import marshal
from typing import IO, Any

HEADER = 8
# The writer process's first answer. Its version changes with the records' shape: a
# worker whose package was replaced under it, and that starts a writer process of the
# new code, sees another answer and writes in a thread of its own code instead.
READY = ("ready", "switchyard-store-writer/3")


def frame(payload: Any) -> bytes:
    return b"".join(frame_parts(payload))


def frame_parts(payload: Any) -> tuple[bytes, bytes]:
    """Header and body apart, so that a large batch is not copied once more to join them."""
    data = marshal.dumps(payload)
    return len(data).to_bytes(HEADER, "big"), data


def parse(data: bytes) -> Any:
    return marshal.loads(data)


def read_frame(stream: IO[bytes]) -> Any:
    """The next payload, or None at the end of the stream."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None
    return parse(stream.read(int.from_bytes(header, "big")))
