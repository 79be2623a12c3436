"""Embedding vectors in an answer: their size without decoding them, and OpenAI's
base64 form (little-endian float32)."""

from __future__ import annotations

import base64
import sys
from array import array

from switchyard.providers.base import JSON


def other_size(result: JSON, dimensions: int) -> int | None:
    """The size of a vector of an embedding answer that does not have ``dimensions``
    (floats, or base64 of little-endian float32), or None if all have it."""
    for item in result.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            size = len(vector)
        elif isinstance(vector, str):
            size = (len(vector) * 3 // 4 - vector[-2:].count("=")) // 4  # without decoding
        else:
            continue
        if size != dimensions:
            return size
    return None


def encode_embeddings_base64(result: JSON) -> None:
    """Encode float vectors as OpenAI does: little-endian float32, base64."""
    for item in result.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            packed = array("f", vector)
            if sys.byteorder != "little":
                packed.byteswap()
            item["embedding"] = base64.b64encode(packed.tobytes()).decode("ascii")
