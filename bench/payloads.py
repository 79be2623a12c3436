"""What the benchmark sends and what its fake upstream answers, built once, in bytes.

The upstream serves these pre-serialised (no JSON work per request), and the load
generator and the smoke test judge answers with :func:`check_answer`, so "a valid
answer" means the same thing everywhere. Sizes follow a typical short chat answer:
a ~650 B ``chat.completion``, a 20-event stream (role chunk, 18 content chunks, a
finish chunk with usage) plus ``data: [DONE]``, and one 1,536-float embedding (~17 KB).
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

CHAT_MODEL = "fake-model"
PACED_MODEL = "fake-model-paced"
EMBED_MODEL = "fake-embed"
MODELS = (CHAT_MODEL, PACED_MODEL, EMBED_MODEL)
EMBED_DIM = 1536
CONTENT_CHUNKS = 18
CREATED = 1764115200

# Request kinds: what the load generator can send and the phases are made of.
KINDS = ("chat", "stream", "paced", "embed")
STREAM_KINDS = frozenset({"stream", "paced"})

_ANSWER = (
    "A gateway in front of model providers should be invisible: it reads the request, "
    "picks the provider, forwards the body, relays the answer as it arrives and keeps "
    "a record. Everything it adds is latency the user pays on every call, so the hot "
    "path does no work that can wait, and nothing is buffered that could be streamed."
)
_USAGE = {"prompt_tokens": 34, "completion_tokens": 71, "total_tokens": 105}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def chat_completion() -> bytes:
    message = {"role": "assistant", "content": _ANSWER, "refusal": None}
    return _dumps(
        {
            "id": "chatcmpl-bench-000000000000000000000001",
            "object": "chat.completion",
            "created": CREATED,
            "model": CHAT_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": _USAGE,
        }
    )


def _content_pieces() -> list[str]:
    words = _ANSWER.split(" ")
    cuts = [round(i * len(words) / CONTENT_CHUNKS) for i in range(CONTENT_CHUNKS + 1)]
    return [" ".join(words[a:b]) + " " for a, b in itertools.pairwise(cuts)]


def stream_events() -> list[bytes]:
    """Each SSE event of the stream, ``data: [DONE]`` last (21 in all)."""
    base = {
        "id": "chatcmpl-bench-000000000000000000000002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": CHAT_MODEL,
        "system_fingerprint": "fp_bench",
    }

    def chunk(delta: dict[str, str], finish: str | None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [chunk({"content": piece}, None) for piece in _content_pieces()]
    chunks.append(chunk({}, "stop", usage=_USAGE))
    return [b"data: " + _dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def embedding() -> bytes:
    rnd = random.Random(1536)  # fixed seed: the same bytes on every run
    vector = [round(rnd.uniform(-0.1, 0.1), 8) for _ in range(EMBED_DIM)]
    return _dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": EMBED_MODEL,
            "usage": {"prompt_tokens": 11, "total_tokens": 11},
        }
    )


def model_list() -> bytes:
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "bench"} for m in MODELS]
    return _dumps({"object": "list", "data": data})


def request_body(kind: str, prefix: str = "") -> bytes:
    """The JSON body for ``kind``; ``prefix`` is Switchyard's provider id (``openai/``)."""
    if kind == "embed":
        text = "How much latency does a gateway add to each call?"
        return _dumps({"model": prefix + EMBED_MODEL, "input": text})
    messages = [
        {"role": "system", "content": "You answer in three sentences."},
        {"role": "user", "content": "What should an LLM gateway optimise for, and why?"},
    ]
    body: dict[str, Any] = {
        "model": prefix + (PACED_MODEL if kind == "paced" else CHAT_MODEL),
        "messages": messages,
        "max_tokens": 128,
        "temperature": 0.2,
    }
    if kind in STREAM_KINDS:
        body["stream"] = True
    return _dumps(body)


def request_path(kind: str) -> str:
    return "/embeddings" if kind == "embed" else "/chat/completions"


def check_answer(kind: str, status: int, body: bytes) -> str | None:
    """None for a valid answer, else a short error kind (the counters' key)."""
    if status != 200:
        return f"status_{status}"
    if kind in STREAM_KINDS:
        if body.count(b"data:") < 3:
            return "short_stream"
        # An error after the first byte arrives as a last event instead of [DONE].
        return None if body.rstrip().endswith(b"data: [DONE]") else "stream_without_done"
    key = b'"embedding"' if kind == "embed" else b'"choices"'
    return None if key in body else "bad_body"
