"""Ollama through its OpenAI-compatible ``/v1`` API.

It ignores ``n`` (so n > 1 is refused rather than silently answered with one choice)
and ``max_completion_tokens`` (sent as ``max_tokens``, which it reads),
returns floats when asked for base64 (the shared adapter encodes those), and reads
images only from data URLs: a web URL is refused with a 400 that says so, rather than
fetched by the gateway (which would let any caller make it download anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from switchyard.config import ProviderConfig
from switchyard.errors import UnsupportedParameterError
from switchyard.providers.base import JSON
from switchyard.providers.openai_compat import OpenAICompatProvider


class OllamaProvider(OpenAICompatProvider):
    type: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str | None] = "http://localhost:11434/v1"
    max_n: ClassVar[int | None] = 1
    # Ollama's list says nothing of dimensions; these are the models' own, by name
    # without the tag (all-minilm:l6-v2, nomic-embed-text:latest).
    embedding_metadata: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "all-minilm": {"embedding_dimension": 384},
        "nomic-embed-text": {"embedding_dimension": 768},
        "mxbai-embed-large": {"embedding_dimension": 1024},
        "bge-m3": {"embedding_dimension": 1024},
    }

    @classmethod
    def env_base_url(cls, env: Mapping[str, str]) -> str | None:
        # OLLAMA_URL is Ollama's root (http://host:11434); its OpenAI API is below /v1.
        # Llama Stack's configs give it with /v1 already: not doubled.
        root = (env.get("OLLAMA_URL") or "").rstrip("/").removesuffix("/v1").rstrip("/")
        return root + "/v1" if root else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProviderConfig | None:
        base_url = cls.env_base_url(env)
        return ProviderConfig(id=cls.type, type=cls.type, base_url=base_url) if base_url else None

    def spellings(self, name: str) -> tuple[str, ...]:
        # Ollama lists every model with its tag (llama3.2:latest) and takes a name
        # without one as :latest, as `ollama run llama3.2` does. The tag follows the
        # last "/" (a registry host may hold a port: host:5000/ns/model).
        bare = name.removesuffix(":latest")
        if ":" in bare.rpartition("/")[2]:
            return (name,)
        return f"{bare}:latest", bare

    def known_embedding(self, model_id: str) -> Mapping[str, Any]:
        return self.embedding_metadata.get(model_id.partition(":")[0], {})

    def prepare_chat(self, body: JSON) -> JSON:
        for i, message in enumerate(body.get("messages") or ()):
            content = message.get("content") if isinstance(message, dict) else None
            for j, part in enumerate(content if isinstance(content, list) else ()):
                image = part.get("image_url") if isinstance(part, dict) else None
                # Only OpenAI's {"url": ...} form is judged; other shapes (a provider's
                # own part type) are Ollama's to refuse.
                url = image.get("url") if isinstance(image, dict) else None
                if isinstance(url, str) and url and not url.startswith("data:"):
                    raise UnsupportedParameterError(
                        self.id,
                        f"messages[{i}].content[{j}].image_url.url",
                        "image URLs other than data URLs; send the image inline as "
                        "data:image/<type>;base64,<data>",
                    )
        limit = body.get("max_completion_tokens")
        if limit is not None and body.get("max_tokens") is None:
            # Ollama's OpenAI API reads only max_tokens (ollama/ollama#7125); the SDK
            # steers users to max_completion_tokens, which it would ignore: no limit.
            body = {k: v for k, v in body.items() if k != "max_completion_tokens"}
            body["max_tokens"] = limit
        return super().prepare_chat(body)
