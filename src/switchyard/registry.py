"""The model registry: models declared in the config plus those each provider lists.

Discovery runs at start and then every refresh interval. A provider that fails to
list keeps its last good list (none if it never answered) and is tried again sooner:
after 5 s, then three times longer each time, up to the interval (Ollama started after
Switchyard is listed within seconds, not minutes); its failure is kept in
:attr:`ModelRegistry.status` for ``/v1/providers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from switchyard.config import Config
from switchyard.errors import ModelNotFoundError, SwitchyardError
from switchyard.providers.base import ModelEntry, ModelInfo, Provider

log = logging.getLogger(__name__)

# The first retry of a provider that failed to list, in seconds; each next one waits
# RETRY_FACTOR times longer, up to the refresh interval.
RETRY_FIRST = 5.0
RETRY_FACTOR = 3.0


@dataclass(slots=True)
class ProviderStatus:
    healthy: bool | None = None  # None: not listed yet
    message: str = "not listed yet"
    last_refresh: float = 0.0
    models: int = 0

    def to_dict(self) -> dict[str, object]:
        status = {None: "unknown", True: "OK", False: "Error"}[self.healthy]
        return {"status": status, "message": self.message, "last_refresh": self.last_refresh}


class ModelRegistry:
    def __init__(self, config: Config, providers: dict[str, Provider]) -> None:
        self._config = config
        self._providers = providers
        self._declared: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}  # alias -> the declared model's id
        self._discovered: dict[str, dict[str, ModelEntry]] = {pid: {} for pid in providers}
        self._index: dict[str, ModelEntry] = {}
        self.status: dict[str, ProviderStatus] = {pid: ProviderStatus() for pid in providers}
        for model in config.models:
            entry = ModelEntry(
                id=model.model_id,
                provider_id=model.provider_id,
                provider_model_id=model.provider_model_id,
                model_type=model.model_type,  # None: what the listing says, if it does
                metadata=dict(model.metadata),
                source="config",
            )
            self._declared[entry.id] = entry
            for alias in model.aliases:
                self._aliases[alias] = entry.id
        self._rebuild()

    # -- lookups -----------------------------------------------------------------

    def resolve(self, model_id: str) -> ModelEntry:
        entry = self._index.get(model_id)
        if entry is not None:
            return entry
        provider_id, sep, rest = model_id.partition("/")
        if sep and rest and self._routable(provider_id, rest):
            # Not listed (yet), but the prefix names a provider: let it decide.
            return ModelEntry(
                id=model_id,
                provider_id=provider_id,
                provider_model_id=rest,
                model_type=None,
                source="prefix",
            )
        raise ModelNotFoundError(model_id)

    def _routable(self, provider_id: str, model: str) -> bool:
        provider = self._providers.get(provider_id)
        if provider is None:
            return False
        allowed = provider.config.allowed_models
        return allowed is None or model in allowed  # the filter routes, not only lists

    def models(self) -> list[ModelEntry]:
        seen: dict[str, ModelEntry] = {}
        for entry in self._index.values():
            seen.setdefault(entry.id, entry)
        return sorted(seen.values(), key=lambda e: e.id)

    def provider(self, provider_id: str) -> Provider:
        return self._providers[provider_id]

    # -- discovery ---------------------------------------------------------------

    async def refresh(self, time_limit: float) -> None:
        """List every provider that discovers models, concurrently, each bounded."""
        await asyncio.gather(
            *(
                self._refresh_one(pid, time_limit)
                for pid, provider in self._providers.items()
                if provider.config.discover
            )
        )

    async def _refresh_one(self, provider_id: str, time_limit: float) -> None:
        provider = self._providers[provider_id]
        status = self.status[provider_id]
        try:
            infos = await asyncio.wait_for(provider.list_models(), time_limit)
        except (SwitchyardError, TimeoutError) as err:
            message = (
                getattr(err, "message", None) or f"listing models timed out after {time_limit}s"
            )
            log.warning("provider %s: cannot list models: %s", provider_id, message)
            status.healthy, status.message = False, message
            return
        except Exception as err:  # a plugin's bug must not stop start-up or the refresh loop
            log.exception("provider %s: listing models failed", provider_id)
            status.healthy, status.message = False, f"listing models failed: {err!r}"
            return
        allowed = provider.config.allowed_models
        if allowed is not None:
            infos = [i for i in infos if i.provider_model_id in allowed]
        self._discovered[provider_id] = {
            entry.id: entry for entry in (self._entry(provider_id, i) for i in infos)
        }
        status.healthy, status.message = True, "OK"
        status.last_refresh, status.models = time.time(), len(infos)
        self._rebuild()

    @staticmethod
    def _entry(provider_id: str, info: ModelInfo) -> ModelEntry:
        return ModelEntry(
            id=f"{provider_id}/{info.provider_model_id}",
            provider_id=provider_id,
            provider_model_id=info.provider_model_id,
            model_type=info.model_type,
            metadata=info.metadata,
            created=info.created,
            owned_by=info.owned_by,
        )

    def _rebuild(self) -> None:
        # Build a fresh dict and swap it in: readers never see a half-built index.
        index: dict[str, ModelEntry] = {}
        listed: dict[tuple[str, str], ModelEntry] = {}
        for models in self._discovered.values():
            index.update(models)
            listed.update(((e.provider_id, e.provider_model_id), e) for e in models.values())
        for declared in self._declared.values():
            found = self._listed_as(declared, listed)
            entry = index[declared.id] = _declared_entry(declared, found)
            default_id = f"{declared.provider_id}/{declared.provider_model_id}"
            if found is not None and declared.id == default_id and found.id not in self._declared:
                # Maybe by another spelling of the listed name (ollama/llama3.2 for
                # llama3.2:latest): one model, listed once, by the config's name (unless
                # the config declares the listed name too: then both are its own).
                index[found.id] = entry
        for alias, model_id in self._aliases.items():
            index.setdefault(alias, index[model_id])
        self._index = index

    def _listed_as(
        self, declared: ModelEntry, listed: dict[tuple[str, str], ModelEntry]
    ) -> ModelEntry | None:
        """The listed model a declared one is, by any name its provider takes for it."""
        provider = self._providers.get(declared.provider_id)
        spellings = getattr(provider, "spellings", None)  # a plugin's provider may have none
        names = spellings(declared.provider_model_id) if spellings else ()
        for name in (declared.provider_model_id, *names):
            found = listed.get((declared.provider_id, name))
            if found is not None:
                return found
        return None

    async def refresh_forever(self) -> None:
        interval = self._config.server.model_refresh_interval
        timeout = self._config.server.discovery_timeout
        loop = asyncio.get_running_loop()
        full_at = loop.time() + interval
        retry = RETRY_FIRST
        while True:
            failed = [pid for pid, status in self.status.items() if status.healthy is False]
            wake = min(full_at, loop.time() + retry) if failed else full_at
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if loop.time() >= full_at:
                await self.refresh(timeout)
                full_at = loop.time() + interval
                retry = RETRY_FIRST  # a provider failing from here is retried after 5 s
            else:
                await asyncio.gather(*(self._refresh_one(pid, timeout) for pid in failed))
                retry = min(retry * RETRY_FACTOR, interval)


def _declared_entry(declared: ModelEntry, listed: ModelEntry | None) -> ModelEntry:
    """A model of the config, completed by what its provider lists of it: declaring a
    model (to name it or give it aliases) must not turn a listed embedding model into a
    language model, nor lose its dimension. With no type stated by either, none: either
    endpoint may try it, and the provider decides (as for a listed model)."""
    if listed is None:
        return declared
    return replace(
        declared,
        model_type=declared.model_type or listed.model_type,
        metadata={**listed.metadata, **declared.metadata},
        created=listed.created,
        owned_by=listed.owned_by,
    )
