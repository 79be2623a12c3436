"""The ASGI application: one factory that builds routes, state and the lifespan.

Providers, their connection pools and the model registry are created in the lifespan,
so that each worker process owns its own and binds them to its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from switchyard import metrics
from switchyard.config import Config, config_from_environment
from switchyard.errors import ConfigError
from switchyard.providers import create_provider
from switchyard.providers.base import Provider
from switchyard.recording.library import cassette_directory, library_for
from switchyard.recording.transport import finish_reads
from switchyard.registry import ModelRegistry
from switchyard.server import chat, completions, embeddings, meta, models, openapi, stored
from switchyard.server.auth import KeyCheck
from switchyard.server.browsers import BrowserGuard
from switchyard.server.errors import HANDLERS
from switchyard.server.fastpath import FastPath, fixed_routes
from switchyard.server.state import AppState
from switchyard.store import open_sink
from switchyard.store.engine import open_database, store_url
from switchyard.transports import transports_for

log = logging.getLogger(__name__)

# How long a shutdown waits for streams a recorder still reads for its cassette.
RECORDING_SHUTDOWN_S = 10.0


def build_providers(config: Config) -> dict[str, Provider]:
    transports = transports_for(config)
    return {p.id: create_provider(p, transports[p.id]) for p in config.providers}


def check_config(config: Config, source: str) -> None:
    """Refuse, before any worker starts, what each worker's start-up would refuse: a
    provider type that does not load or misses a setting, a store that cannot be
    placed, record or replay without its cassette folder, a cassette to replay that does
    not load. A ConfigError names the file and the field, as a malformed file's does."""
    for index, provider in enumerate(config.providers):
        try:
            create_provider(provider)
        except ConfigError as err:
            raise _config_error(source, f"providers.{index}", err) from None
    if config.store.enabled:
        try:
            open_database(store_url(config)).dispose()  # makes the SQLite file's folder
        except ConfigError as err:
            raise _config_error(source, "store.url", err) from None
    if config.recording.mode != "live":
        try:
            cassette_directory(config.recording)
            if config.recording.mode != "record":
                # Reads the cassettes it will replay, so that a broken one is named here
                # (tens of ms for hundreds of recordings; each worker reads them again).
                library_for(config.recording)
        except ConfigError as err:
            raise _config_error(source, "recording.cassettes", err) from None


def _config_error(source: str, field: str, err: ConfigError) -> ConfigError:
    message = err.message if err.message.startswith(field) else f"{field}: {err.message}"
    return ConfigError(f"invalid configuration in {source}:\n  {message}")


def create_app(config: Config, providers: dict[str, Provider] | None = None) -> FastPath:
    """The app for ``config``. ``providers`` lets a test inject prebuilt ones."""
    providers = build_providers(config) if providers is None else providers
    state = AppState(config=config, providers=providers, registry=ModelRegistry(config, providers))
    routes: list[BaseRoute] = [
        *chat.routes(state),
        *completions.routes(state),
        *embeddings.routes(state),
        *stored.routes(state),
        *models.routes(state),
        *meta.routes(state),
        *openapi.routes(),
        *metrics.routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for provider in providers.values():
            await provider.start()
        state.sink = await open_sink(config)
        await state.registry.refresh(config.server.discovery_timeout)
        refresher = asyncio.create_task(state.registry.refresh_forever())
        publisher = asyncio.create_task(metrics.publish_forever()) if metrics.SHARED else None
        _freeze_startup_objects()
        log.info(
            "serving %d models from %d providers", len(state.registry.models()), len(providers)
        )
        try:
            yield
        finally:
            for task in (refresher, publisher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            # Streams a recorder still reads for its cassette, before their pools close.
            try:
                await finish_reads(RECORDING_SHUTDOWN_S)
            except Exception:  # the store's flush below must happen whatever this does
                log.exception("recording: ending the streams being recorded failed")
            # The store first: its queue must be flushed whatever a provider does.
            if state.sink is not None:
                await state.sink.close()
            for provider in providers.values():
                try:
                    await provider.close()
                except Exception:
                    log.exception("provider %s did not close cleanly", provider.id)
            metrics.process_exit()

    app = Starlette(routes=routes, exception_handlers=dict(HANDLERS), lifespan=lifespan)
    # A path with a slash too many gets OpenAI's answer, a 404 that says so, not an
    # empty redirect to a URL built from the client's Host header.
    app.router.redirect_slashes = False
    app.state.switchyard = state
    server = config.server
    keys = KeyCheck(server.api_keys) if server.api_keys else None
    browsers = BrowserGuard(server.allowed_origins, server.allowed_hosts, keys=keys is not None)
    return FastPath(app, fixed_routes(routes), keys, browsers)


def _freeze_startup_objects() -> None:
    """Keep what startup built (modules, config, providers: most of the heap) out of
    every later garbage collection. Stored completions wait in the store's queue long
    enough to survive into the oldest generation, which makes full collections frequent;
    each one traversed all of startup's objects again (bench/NOTES.md, section 7).

    Only a server that owns its process does: one serving in a thread of another
    program (the pytest plugin's) would freeze that program's heap, and every app it
    started after the first would stay in memory for good."""
    if threading.current_thread() is not threading.main_thread():
        return
    gc.collect()
    gc.freeze()


def app_from_environment() -> Any:
    """Factory for uvicorn workers: each builds the same config from the environment."""
    return create_app(config_from_environment())
