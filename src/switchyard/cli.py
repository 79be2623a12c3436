"""The command line: a thin layer over :class:`~switchyard.config.Config`.

Options that change the config are passed to the server as ``SWITCHYARD_*``
environment variables, so every worker process (``--workers N``) builds the same one.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import get_args
from urllib.parse import urlsplit

import click

from switchyard._version import __version__
from switchyard.config import Config, LogLevel, RecordMode, config_from_environment
from switchyard.errors import ConfigError
from switchyard.limits import low_limit_warning, raise_open_files
from switchyard.metrics import MULTIPROCESS_DIR
from switchyard.recording.cli import cassettes

RECORD_MODES = list(get_args(RecordMode))


@click.group()
@click.version_option(__version__, prog_name="switchyard")
def main() -> None:
    """Switchyard: one OpenAI-compatible endpoint in front of many model providers."""


main.add_command(cassettes)


def _load(env_updates: dict[str, str]) -> Config:
    os.environ.update(env_updates)
    try:
        return config_from_environment()
    except ConfigError as err:
        click.echo(f"switchyard: {err.message}", err=True)
        sys.exit(2)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@main.command()
@click.option(
    "--host",
    envvar="SWITCHYARD_HOST",
    help="Interface to bind (default: the config's server.host, 127.0.0.1).",
)
@click.option(
    "--port",
    # Checked here: an out-of-range port wraps around in getaddrinfo (70000 binds 4464).
    type=click.IntRange(0, 65535),
    envvar="SWITCHYARD_PORT",
    help="Port (default: the config's server.port, 8321).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="SWITCHYARD_CONFIG",
    help="YAML config file; without it, a default built from the environment.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    envvar="SWITCHYARD_WORKERS",
    help="Worker processes (default: the config's server.workers, 1).",
)
@click.option(
    "--record-mode",
    type=click.Choice(RECORD_MODES),
    envvar="SWITCHYARD_RECORD_MODE",
    help="Record or replay provider traffic.",
)
@click.option(
    "--cassettes",
    type=click.Path(file_okay=False),
    envvar="SWITCHYARD_CASSETTES",
    help="Cassette directory for --record-mode.",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(get_args(LogLevel), case_sensitive=False),
    help="Log level (default: the config's server.log_level, info).",
)
def run(
    host: str | None,
    port: int | None,
    config_path: str | None,
    workers: int | None,
    record_mode: str | None,
    cassettes: str | None,
    log_level: str | None,
) -> None:
    """Serve the API (http://127.0.0.1:8321/v1 by default)."""
    updates = {
        "SWITCHYARD_CONFIG": os.path.abspath(config_path) if config_path else None,
        "SWITCHYARD_RECORD_MODE": record_mode,
        "SWITCHYARD_CASSETTES": os.path.abspath(cassettes) if cassettes else None,
    }
    config = _load({k: v for k, v in updates.items() if v})
    from switchyard.server.app import check_config

    try:
        check_config(config, updates["SWITCHYARD_CONFIG"] or "the default config")
    except ConfigError as err:
        click.echo(f"switchyard: {err.message}", err=True)
        sys.exit(2)
    server = config.server
    host = host or server.host
    port = server.port if port is None else port
    loop = _calls_itself(config, host, port)
    if loop:
        click.echo(f"switchyard: {loop}", err=True)
        sys.exit(2)
    if not server.api_keys and not _loopback(host):
        click.echo(
            f"switchyard: warning: serving on {host} with no server.api_keys: whoever "
            "reaches it uses the providers' keys. Set server.api_keys or SWITCHYARD_API_KEYS.",
            err=True,
        )
    too_few = low_limit_warning(raise_open_files())
    if too_few:
        click.echo(f"switchyard: {too_few}", err=True)
    level = (log_level or server.log_level).upper()
    workers = workers or server.workers
    with shared_metrics(workers):
        _serve(host, port, workers, level, server.access_log)


def _calls_itself(config: Config, host: str, port: int) -> str | None:
    """Why a provider would call this very server (``OPENAI_BASE_URL`` set for clients
    of Switchyard, say), or None: every request would loop until it timed out. Replay
    calls no provider, so it has nothing to refuse."""
    from switchyard.providers import provider_class

    if config.recording.mode == "replay":
        return None
    for provider in config.providers:
        default = getattr(provider_class(provider.type), "default_base_url", None)
        base_url = provider.base_url or default
        if not base_url:
            continue
        try:
            target = urlsplit(base_url)
            target_port = target.port or _DEFAULT_PORTS.get(target.scheme)
        except ValueError:  # not a URL a connection could be made to: not this server
            continue
        if target_port == port and _same_host(target.hostname or "", host):
            return (
                f"provider '{provider.id}' would call this server itself ({base_url}, from "
                "its config or its type's *_BASE_URL variable): point it at the provider, or "
                "serve on another port."
            )
    return None


def _same_host(target: str, served: str) -> bool:
    """Whether a connection to ``target`` reaches a server bound to ``served``: the same
    address, localhost for a loopback one, or any loopback one for a wildcard bind."""
    if served in ("", "0.0.0.0", "::"):
        return _loopback(target)
    names = {"localhost": {"127.0.0.1", "::1"}}
    return bool(names.get(target, {target}) & names.get(served, {served}))


def _serve(host: str, port: int, workers: int, level: str, access_log: bool) -> None:
    import uvicorn

    from switchyard.server.protocol import HTTP_PROTOCOL, KEEP_ALIVE_SECONDS

    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Our own loggers print in uvicorn's format, with the id of the request being handled.
    log_config["filters"] = {"request_id": {"()": "switchyard.server.request_id.RequestIdFilter"}}
    log_config["formatters"]["switchyard"] = {
        **log_config["formatters"]["default"],
        "fmt": "%(levelprefix)s %(message)s%(request)s",
    }
    log_config["handlers"]["switchyard"] = {
        **log_config["handlers"]["default"],
        "formatter": "switchyard",
        "filters": ["request_id"],
    }
    log_config["loggers"]["switchyard"] = {"handlers": ["switchyard"], "level": level}
    access = log_config["formatters"]["access"]
    access["fmt"] += "%(request)s"
    log_config["handlers"]["access"]["filters"] = ["request_id"]
    uvicorn.run(
        "switchyard.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HTTP_PROTOCOL,
        # No WebSocket route exists; uvicorn's WebSocket handshake would answer past the
        # key check and OpenAI's error shape. An Upgrade is refused by HttpProtocol.
        ws="none",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        log_level=level.lower(),
        log_config=log_config,
        access_log=access_log,
        lifespan="on",
        # X-Forwarded-* are trusted only behind a proxy the operator names; skipping
        # uvicorn's middleware for it also saves work on every request.
        proxy_headers=False,
        # No "server: uvicorn" on every answer: it names a layer, not this server, and
        # uvicorn checks each header with two regular expressions (bench/NOTES.md, 52).
        server_header=False,
        timeout_graceful_shutdown=30,
    )


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, a directory where they share their metrics (``metrics``),
    removed when they have all exited; one set in the environment is used as it is."""
    if workers < 2 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="switchyard-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR]
