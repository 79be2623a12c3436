"""Turn Llama Stack's recordings into Switchyard cassettes, one per provider.

Reads every ``*.json`` under the source: a tree sorted by provider
(``<provider>/<file>.json``, as in ``shared/recordings/llama-stack``) or Llama Stack's own
layouts, the old ``tests/integration/recordings/responses/<hash>.json`` and the newer
``tests/integration/<area>/recordings/<sha256>.json``, where the provider is read from the
request URL. Files for endpoints Switchyard does not serve (Ollama's native ``/api/*``,
for instance) and files that are not recordings are skipped and counted.

Model lists are recorded as ``POST`` by Llama Stack and become ``GET /v1/models``. A
provider's model lists go first, largest first, so that discovery in replay mode starts
with the most complete one; everything else keeps the order of the file names.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from switchyard.recording.cassette import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamEvent,
)
from switchyard.recording.files import cassette_path, save_cassette
from switchyard.recording.llama_stack import MODELS, RecordedExchange, load_exchange
from switchyard.recording.matching import sorted_json
from switchyard.recording.sse import DONE

__all__ = ["ImportReport", "import_llama_stack", "interaction_from_exchange", "provider_of_url"]

# Folders of Llama Stack's own layouts: their files are sorted by area, not by provider.
_LAYOUT_FOLDERS = frozenset({"responses", "recordings"})

# Host (or host:port) fragments of the providers Llama Stack records, checked in order.
_HOSTS = (
    ("together.xyz", "together"),
    ("fireworks.ai", "fireworks"),
    ("api.openai.com", "openai"),
    ("azure.com", "azure"),
    ("amazonaws.com", "bedrock"),
    ("api.aws", "bedrock"),
    ("cerebras.ai", "cerebras"),
    ("databricks", "databricks"),
    ("generativelanguage.googleapis.com", "gemini"),
    ("cloud.ibm.com", "watsonx"),
    ("groq.com", "groq"),
    ("sambanova.ai", "sambanova"),
    ("nvidia.com", "nvidia"),
    (":11434", "ollama"),
    (":8000", "vllm"),
    (":8080", "tgi"),
)
# Servers that share a port, told apart by the owner their model list names: Llama
# Stack's newest recordings on :8080 are llama.cpp's server, its older ones TGI.
_OWNERS = {"llamacpp": "llama-cpp-server"}


@dataclass(slots=True)
class ImportReport:
    """What an import wrote and what it left out."""

    written: dict[str, int] = field(default_factory=dict)
    """Interactions per provider (one cassette each)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """File -> why it was not imported."""

    @property
    def total(self) -> int:
        return sum(self.written.values())


def provider_of_url(url: str) -> str:
    """The provider a recorded URL belongs to; unknown hosts give a name made of the host."""
    lowered = url.lower()
    for fragment, provider in _HOSTS:
        if fragment in lowered:
            return provider
    host = urlsplit(lowered).netloc or lowered.split("/", 1)[0]
    return "".join(c if c.isalnum() else "-" for c in host).strip("-") or "unknown"


def import_llama_stack(source: Path, destination: Path) -> ImportReport:
    """Convert every recording under ``source`` into ``destination/<provider>.json``."""
    report = ImportReport()
    grouped: dict[str, list[Interaction]] = defaultdict(list)
    for path in sorted(source.rglob("*.json")):
        try:
            exchange = _load(path)
        except ValueError as err:
            report.skipped[str(path)] = str(err)
            continue
        grouped[exchange.provider].append(interaction_from_exchange(exchange, path, source))
    for provider, interactions in sorted(grouped.items()):
        interactions.sort(key=_model_lists_first)
        cassette = Cassette(name=provider, interactions=interactions)
        save_cassette(cassette, cassette_path(destination, provider))
        report.written[provider] = len(interactions)
    return report


def _load(path: Path) -> RecordedExchange:
    if path.parent.name not in _LAYOUT_FOLDERS:
        return load_exchange(path)
    exchange = load_exchange(path, provider="?")
    provider = _OWNERS.get(_owner(exchange.response), "") or provider_of_url(exchange.url)
    return load_exchange(path, provider=provider)


def _owner(response: Any) -> str:
    """The ``owned_by`` of a model list's first model, if the response is one."""
    models = response.get("data") if isinstance(response, dict) else response
    first = models[0] if isinstance(models, list) and models else None
    return str(first.get("owned_by") or "") if isinstance(first, dict) else ""


def _model_lists_first(interaction: Interaction) -> tuple[int, int]:
    if interaction.request.path != MODELS:
        return (1, 0)
    body = interaction.response.body
    data = body.get("data") if isinstance(body, dict) else None
    return (0, -len(data) if isinstance(data, list) else 0)


def interaction_from_exchange(
    exchange: RecordedExchange, path: Path, root: Path | None = None
) -> Interaction:
    """One cassette interaction for one Llama Stack recording."""
    body = _wire_body(exchange.body)
    request = RecordedRequest(
        method=exchange.method,
        path=exchange.endpoint,
        body=sorted_json(body),
        headers={} if body is None else {"content-type": "application/json"},
    )
    if exchange.events is not None:
        events = [StreamEvent(chunk) for chunk in exchange.events]
        events.append(StreamEvent(DONE.decode()))  # what the wire carried after the chunks
        response = RecordedResponse(
            exchange.status, {"content-type": "text/event-stream"}, events=events
        )
    else:
        response = RecordedResponse(
            exchange.status, {"content-type": "application/json"}, body=exchange.response
        )
    where = os.path.relpath(path, root) if root is not None else str(path)
    return Interaction(
        provider=exchange.provider,
        request=request,
        response=response,
        # Llama Stack keeps no date. A file's modification time would be one, but a copy
        # or a checkout changes it, and every re-import would then rewrite every cassette.
        recorded_at=None,
        source=f"llama-stack:{where}",
        test_id=exchange.test_id,
    )


def _wire_body(body: dict[str, object] | None) -> dict[str, object] | None:
    """The body as it went on the wire: the SDK merges ``extra_body`` into the JSON, but
    the recorder kept it as a key."""
    extra = None if body is None else body.get("extra_body")
    if body is None or not isinstance(extra, dict):
        return body
    merged = {key: value for key, value in body.items() if key != "extra_body"}
    for key, value in extra.items():
        merged.setdefault(key, value)
    return merged
