"""The writer process's wire format: 8 bytes of length (big-endian), then a pickle.

Only a worker and the writer process it started talk this way, over their own pipes,
so the pickles are trusted.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

HEADER = 8
READY = ("ready", "switchyard-store-writer/1")  # the writer process's first answer


def frame(payload: Any) -> bytes:
    return b"".join(frame_parts(payload))


def frame_parts(payload: Any) -> tuple[bytes, bytes]:
    """Header and pickle apart, so that a large batch is not copied once more to join them."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(HEADER, "big"), data


def read_frame(stream: IO[bytes]) -> Any:
    """The next payload, or None at the end of the stream."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None
    return pickle.loads(stream.read(int.from_bytes(header, "big")))
