"""Explaining a replay miss: the cassette, the closest recording and what differs.

The closest recording is the one whose differing fields weigh least: a string counts
between 0.1 and 1 by how unlike the two are (two prompts that share most words are close),
any other value 0.5, a different method or path as many fields (it is almost never the
one meant), and another provider's recording loses ties to the asking provider's.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import TYPE_CHECKING

from switchyard.errors import ReplayMissError
from switchyard.recording.cassette import RecordedRequest
from switchyard.recording.llama_stack import normalise_path
from switchyard.recording.matching import Difference, canonical_body, differences

if TYPE_CHECKING:
    from switchyard.recording.library import CassetteLibrary, Recorded

__all__ = ["miss_error"]

_OTHER_ENDPOINT = 1000
_OTHER_PROVIDER = 0.5
_SHOWN = 6


def miss_error(
    library: CassetteLibrary, provider_id: str, request: RecordedRequest
) -> ReplayMissError:
    asked = f"{request.method} {request.path}"
    head = (
        f"No recording for {asked} (provider '{provider_id}') in replay mode; {_searched(library)}."
    )
    best = _closest(library, provider_id, request)
    if best is None:
        message = f"{head} Nothing is recorded there: check the directory and cassette name."
        return ReplayMissError(message, provider_id=provider_id, cassette=str(library.primary))
    entry, diffs = best
    recorded = entry.interaction.request
    where = (
        f"{entry.cassette} interactions[{entry.index}]"
        if entry.index >= 0
        else f"{entry.cassette} (recorded by this server)"
    )
    shown = "; ".join(d.describe() for d in diffs[:_SHOWN])
    more = f"; and {len(diffs) - _SHOWN} more" if len(diffs) > _SHOWN else ""
    message = (
        f"{head} Closest recorded request: {where} "
        f"({recorded.method} {recorded.path}, provider '{entry.interaction.provider}'), "
        f"which differs in {_count(len(diffs))}: {shown}{more}. "
        "Record it with --record-mode record-if-missing, or ignore a field that does not "
        "matter with recording.ignore_fields."
    )
    return ReplayMissError(
        message,
        provider_id=provider_id,
        cassette=str(library.primary),
        closest=where,
        differences=tuple(d.path for d in diffs),
    )


def _closest(
    library: CassetteLibrary, provider_id: str, request: RecordedRequest
) -> tuple[Recorded, list[Difference]] | None:
    best: tuple[float, Recorded, list[Difference]] | None = None
    for entry in library.entries:
        diffs = _compare(entry, provider_id, request)
        score = sum(_weight(d) for d in diffs)
        if entry.interaction.provider != provider_id:
            score += _OTHER_PROVIDER
        if normalise_path(entry.interaction.request.path) != request.path:
            score += _OTHER_ENDPOINT
        if best is None or score < best[0]:
            best = (score, entry, diffs)
    return None if best is None else (best[1], best[2])


def _compare(entry: Recorded, provider_id: str, request: RecordedRequest) -> list[Difference]:
    recorded = entry.interaction.request
    found: list[Difference] = []
    if request.body is None and entry.interaction.provider != provider_id:
        # Bodyless requests only replay to their own provider (see the library).
        found.append(Difference("provider", entry.interaction.provider, provider_id))
    if recorded.method != request.method:
        found.append(Difference("method", recorded.method, request.method))
    if normalise_path(recorded.path) != request.path:
        found.append(Difference("path", recorded.path, request.path))
    body = differences(
        canonical_body(recorded.body, entry.ignore), canonical_body(request.body, entry.ignore)
    )
    return found + body


def _weight(difference: Difference) -> float:
    """From 0.1 for nearly equal strings to 1 for unrelated ones; 0.5 for other values
    (a changed setting says less about which request was meant than a new prompt)."""
    recorded, got = difference.recorded, difference.got
    if isinstance(recorded, str) and isinstance(got, str):
        # Bounded: long documents are compared by their beginnings.
        similar = SequenceMatcher(None, recorded[:500], got[:500], autojunk=False).ratio()
        return 0.1 + 0.9 * (1 - similar)
    return 0.5


def _searched(library: CassetteLibrary) -> str:
    """The cassettes looked in: the named one if it exists, then the others."""
    others = {e.cassette for e in library.entries if e.cassette != library.primary}
    primary = library.primary.exists()
    if not others:
        return f"cassette {library.primary}" + ("" if primary else " (no such file)")
    plural = "s" if len(others) > 1 else ""
    if not primary:
        return f"{len(others)} cassette{plural} in {library.directory}"
    more = f"{len(others)} more cassette{plural} in {library.directory}"
    return f"cassette {library.primary} (and {more})"


def _count(n: int) -> str:
    return "1 field" if n == 1 else f"{n} fields"
