"""``switchyard cassettes``: import Llama Stack's recordings, list and print cassettes."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click
import orjson

from switchyard.recording.cassette import Cassette, Interaction
from switchyard.recording.files import NotACassette, list_cassettes, load_cassette
from switchyard.recording.importer import import_llama_stack
from switchyard.recording.matching import describe

__all__ = ["cassettes"]


@click.group()
def cassettes() -> None:
    """Work with record/replay cassettes (see `switchyard run --record-mode`)."""


@cassettes.command("import-llama-stack")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Also list the files that were skipped.")
def import_command(source: Path, destination: Path, verbose: bool) -> None:
    """Convert Llama Stack recordings under SOURCE into one cassette per provider in
    DESTINATION (existing cassettes of those providers are replaced)."""
    report = import_llama_stack(source, destination)
    for provider, count in report.written.items():
        click.echo(f"{provider:<20} {count:>5} interactions -> {destination / provider}.json")
    click.echo(f"{report.total} interactions imported, {len(report.skipped)} files skipped")
    if verbose:
        for path, why in report.skipped.items():
            click.echo(f"  skipped {path}: {why}")


@cassettes.command("ls")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def ls_command(directory: Path) -> None:
    """List the cassettes in DIRECTORY with what they hold."""
    paths = list_cassettes(directory)
    if not paths:
        click.echo(f"no cassettes in {directory}")
        return
    click.echo(f"{'cassette':<28} {'count':>5} {'streams':>7} {'errors':>6}  endpoints")
    broken = False
    for path in paths:
        try:
            cassette = load_cassette(path)
        except NotACassette as err:
            click.echo(f"  skipped {err}", err=True)
            continue
        except ValueError as err:
            click.echo(f"Error: {err}", err=True)
            broken = True
            continue
        items = cassette.interactions
        streams = sum(1 for i in items if i.response.is_stream)
        errors = sum(1 for i in items if i.response.status >= 400)
        endpoints = Counter(f"{i.request.method} {i.request.path}" for i in items)
        summary = ", ".join(f"{name} x{n}" for name, n in sorted(endpoints.items()))
        click.echo(f"{path.stem:<28} {len(items):>5} {streams:>7} {errors:>6}  {summary}")
    if broken:
        sys.exit(1)


@cassettes.command("show")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--provider", help="Only interactions of this provider.")
@click.option("--path", "endpoint", help="Only requests to this path, e.g. /v1/embeddings.")
@click.option("--json", "as_json", is_flag=True, help="Print the interactions as JSON.")
def show_command(target: Path, provider: str | None, endpoint: str | None, as_json: bool) -> None:
    """Print the interactions of a cassette file, or of every cassette in a directory."""
    paths = list_cassettes(target) if target.is_dir() else [target]
    for path in paths:
        cassette = _load(path, in_directory=target.is_dir())
        if cassette is None:
            continue
        for index, interaction in enumerate(cassette.interactions):
            if provider and interaction.provider != provider:
                continue
            if endpoint and interaction.request.path != endpoint:
                continue
            if as_json:
                sys.stdout.write(orjson.dumps(interaction.to_json()).decode() + "\n")
            else:
                click.echo(_summary(path.stem, index, interaction))


def _summary(cassette: str, index: int, interaction: Interaction) -> str:
    request, response = interaction.request, interaction.response
    if response.events is not None:
        answer = f"{response.status} stream of {len(response.events)} events"
    elif response.status >= 400:
        answer = f"{response.status} error {describe(response.body or response.text, 100)}"
    else:
        answer = f"{response.status} {describe(response.body or response.text, 60)}"
    lines = [
        f"{cassette}[{index}] {interaction.provider} {request.method} {request.path} -> {answer}",
        f"    recorded {interaction.recorded_at or 'at an unknown time'}"
        + (f" ({interaction.source})" if interaction.source else ""),
    ]
    if request.body is not None:
        lines.append(f"    body {describe(request.body, 160)}")
    return "\n".join(lines)


def _load(path: Path, *, in_directory: bool) -> Cassette | None:
    """The cassette; None for a stray JSON file beside the cassettes of a directory."""
    try:
        return load_cassette(path)
    except NotACassette as err:
        if not in_directory:
            raise click.ClickException(str(err)) from None
        click.echo(f"  skipped {err}", err=True)
        return None
    except ValueError as err:
        raise click.ClickException(str(err)) from None
