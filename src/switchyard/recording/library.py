"""The cassettes one server replays from and records into.

A :class:`CassetteLibrary` holds the interactions of the cassette directory (the named
cassette first, then the others by name; or only the named one), answers "which recording
matches this request" with a cursor per recording matched, so identical requests (equal
once ignored fields are dropped) replay in recorded order (and, in replay mode, start
over when all were used; record-if-missing records one more), explains misses, and
appends new recordings to the named cassette. Lookups prefer interactions of the asking
provider and then accept any other provider's with the same body, so a directory
imported with one cassette per provider replays under other provider ids (record-if-missing
accepts only imported ones and records its own instead); bodyless requests (model lists)
only match the asking provider's, as any other provider's list would be wrong.

All providers of one server share one library (:func:`library_for`, called once per
server by :func:`switchyard.transports.transports_for`), so that a directory of imported
recordings is parsed once, not once per provider. With ``--workers N`` each
worker process has its own library, so "in recorded order" holds per worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from switchyard.config import RecordingConfig
from switchyard.errors import ConfigError, ReplayMissError
from switchyard.recording.cassette import Interaction, RecordedRequest
from switchyard.recording.files import (
    NotACassette,
    append_interaction,
    cassette_path,
    ensure_cassette,
    list_cassettes,
    load_cassette,
    session_id,
)
from switchyard.recording.llama_stack import normalise_path
from switchyard.recording.matching import IgnoreTree, ignore_tree, match_key
from switchyard.recording.miss import miss_error

log = logging.getLogger(__name__)

__all__ = ["CassetteLibrary", "Recorded", "library_for"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """An interaction and where it lives, for matching and for messages."""

    interaction: Interaction
    cassette: Path
    index: int
    """Position in its cassette's ``interactions``."""
    ignore: IgnoreTree
    """The fields its matching ignores (global and its cassette's)."""
    order: int
    """Load order: the named cassette first, then the others by name."""


class CassetteLibrary:
    """Interactions by match key, cursors for ordered replay, and the recorder's target.

    ``load`` is ``"directory"`` (every cassette of the directory), ``"cassette"`` (only
    the named one) or ``"none"`` (record mode, which never replays). ``session`` is the
    record session that overwrites the named cassette; ``None`` appends to it.
    ``test_id`` tags what is recorded, and replay prefers the recordings it tagged.
    """

    def __init__(
        self,
        directory: Path,
        name: str = "default",
        *,
        ignore_fields: list[str] | tuple[str, ...] = (),
        load: str = "directory",
        session: str | None = None,
        test_id: str | None = None,
    ) -> None:
        self.directory = directory
        self.primary = cassette_path(directory, name)
        self._global_ignore = list(ignore_fields)
        self._primary_ignore = ignore_tree(self._global_ignore)
        self._session = session
        self.test_id = test_id
        self.entries: list[Recorded] = []
        # Interactions grouped by the fields they ignore, then by match key: a request's
        # key is computed once per group (there are as many groups as distinct settings).
        self._groups: dict[str, tuple[IgnoreTree, dict[bytes, list[Recorded]]]] = {}
        self._cursors: dict[tuple[int, str, bool], int] = defaultdict(int)
        self._write_lock = asyncio.Lock()
        # The model lists this library has recorded, by (provider, method, path): whether
        # one succeeded. Each is written once, and a success after failures too.
        self._lists: dict[tuple[str, str, str], bool] = {}
        if load != "none":
            self._load(whole_directory=load == "directory")

    def _load(self, *, whole_directory: bool) -> None:
        paths = [self.primary] if self.primary.exists() else []
        if whole_directory and self.directory.is_dir():
            paths += [p for p in list_cassettes(self.directory) if p != self.primary]
        for path in paths:
            try:
                cassette = load_cassette(path)
            except NotACassette as err:
                if path == self.primary:
                    raise ConfigError(f"cannot replay: {err}") from None
                # A stray file beside the cassettes (a package.json) is no reason to stop.
                log.warning("recording: skipped %s", err)
                continue
            except ValueError as err:
                raise ConfigError(f"cannot replay: {err}") from None
            except OSError as err:
                raise ConfigError(f"cannot replay: cannot read {path}: {err.strerror}") from None
            ignore = ignore_tree([*self._global_ignore, *cassette.ignore_fields])
            if path == self.primary:
                self._primary_ignore = ignore
            for index, interaction in enumerate(cassette.interactions):
                self._add(interaction, path, index, ignore)

    def _add(self, interaction: Interaction, path: Path, index: int, ignore: IgnoreTree) -> None:
        entry = Recorded(interaction, path, index, ignore, len(self.entries))
        self.entries.append(entry)
        request = interaction.request
        # A cassette written by hand or by another tool may hold a doubled /v1/v1.
        key = match_key(request.method, normalise_path(request.path), request.body, ignore)
        _, by_key = self._groups.setdefault(repr(ignore), (ignore, {}))
        by_key.setdefault(key, []).append(entry)

    def find(
        self, provider_id: str, request: RecordedRequest, *, can_record: bool = False
    ) -> Interaction | None:
        """The next recording for ``request`` (the asking provider's first), or ``None``;
        once all were used, the first again. A bodyless request (a model list) always
        gets the first that succeeded.

        ``can_record`` (record-if-missing) makes ``None`` rather than a stand-in: when
        all were used, when a model list only ever failed, and when only another
        provider recorded it (unless imported: those were named by the importer)."""
        matches: list[Recorded] = []
        for ignore, by_key in self._groups.values():
            matches += by_key.get(match_key(request.method, request.path, request.body, ignore), ())
        own = [m for m in matches if m.interaction.provider == provider_id]
        if not own and can_record:
            # Two providers serving a model of one name (Ollama and vLLM) answer apart.
            matches = [m for m in matches if m.interaction.source is not None]
        # A bodyless request (a model list) says nothing that ties it to a provider:
        # another provider's answer would only be wrong.
        if not matches or (not own and request.body is None):
            return None
        candidates = self._this_tests(sorted(own or matches, key=lambda m: m.order), can_record)
        if not candidates:
            return None
        if request.body is None:
            # A model list, asked at start and at every refresh: always the first one
            # recorded that listed models (not a failure, while a later one succeeded),
            # or a replaying server's models would change every few minutes.
            good = [c for c in candidates if c.interaction.response.status < 400]
            if not good and can_record:
                return None  # recorded with a wrong key, say: list them again
            return (good or candidates)[0].interaction
        # Each provider replays its own recordings in order, whoever else asks the same.
        # The cursor is the first recording matched, not the request: requests that differ
        # only in ignored fields share it, and one recorded later extends the same list.
        cursor = (candidates[0].order, provider_id, bool(own))
        position = self._cursors[cursor]
        if position >= len(candidates):
            if can_record:
                return None
            position = 0
        self._cursors[cursor] = position + 1
        return candidates[position].interaction

    def _this_tests(self, candidates: list[Recorded], can_record: bool) -> list[Recorded]:
        """Tests sharing a cassette: this test's own recordings, in its own order. To
        record-if-missing, another test's are not lent (once this test has its own, a
        replay would not give it what it got while recording): it records its own;
        untagged recordings (imported, or from a server) are anyone's."""
        if self.test_id is None:
            return candidates
        mine = [c for c in candidates if c.interaction.test_id == self.test_id]
        if mine or not can_record:
            return mine or candidates
        return [c for c in candidates if c.interaction.test_id is None]

    def miss(self, provider_id: str, request: RecordedRequest) -> ReplayMissError:
        """The error for a request nothing matches, naming the closest recording."""
        return miss_error(self, provider_id, request)

    async def record(self, interaction: Interaction, *, replayable: bool) -> None:
        """Append to the named cassette (in a thread: file locks and fsync block).

        ``replayable`` (record-if-missing) also makes it answer later identical requests.
        A model list is written once per provider (a failed one once too, and then a
        success): the registry asks again at every refresh and retry, and a cassette's
        contents must not depend on how long it recorded.
        """
        listing = _listing(interaction)
        ok = interaction.response.status < 400
        if listing in self._lists and (self._lists[listing] or not ok):
            return
        async with self._write_lock:  # keeps this process's interactions in order
            try:
                await asyncio.to_thread(
                    append_interaction, self.primary, interaction, self._session
                )
            except Exception:  # a full disk, a broken cassette: the answer still goes
                log.error(
                    "recording: %s %s (provider %s) was not written to %s",
                    interaction.request.method,
                    interaction.request.path,
                    interaction.provider,
                    self.primary,
                    exc_info=True,
                )
                return
            if listing is not None:
                self._lists[listing] = self._lists.get(listing, False) or ok
            if replayable:
                self._add(interaction, self.primary, -1, self._primary_ignore)
                # Used by the request that recorded it: the next identical one of this
                # run records its own, as a run that replays the cassette will ask.
                self.find(interaction.provider, interaction.request, can_record=True)
        log.info(
            "recorded %s %s (provider %s) into %s",
            interaction.request.method,
            interaction.request.path,
            interaction.provider,
            self.primary,
        )


def _listing(interaction: Interaction) -> tuple[str, str, str] | None:
    """What identifies a bodyless request (a model list), or None for another."""
    request = interaction.request
    if request.body is not None:
        return None
    return (interaction.provider, request.method, normalise_path(request.path))


def cassette_directory(config: RecordingConfig) -> Path:
    """The cassette directory of a recording config (mode other than ``live``); a
    :class:`ConfigError` when it is not set, or is missing in replay mode."""
    if not config.cassettes:
        raise ConfigError(
            f"recording.mode is '{config.mode}' but no cassette directory is set; "
            "give recording.cassettes in the config, --cassettes or SWITCHYARD_CASSETTES"
        )
    directory = Path(config.cassettes).expanduser().resolve()
    if config.mode == "replay" and not directory.is_dir():
        raise ConfigError(f"replay mode: the cassette directory {directory} does not exist")
    return directory


def library_for(config: RecordingConfig) -> CassetteLibrary:
    """A new library for a server's recording config (mode other than ``live``). Each
    server gets its own, with replay positions of its own: a test's server must not
    carry on where an earlier test's server of the same process left off."""
    directory = cassette_directory(config)
    if config.mode != "replay":
        ensure_cassette(cassette_path(directory, config.cassette))
    return CassetteLibrary(
        directory,
        config.cassette,
        ignore_fields=config.ignore_fields,
        # record mode never replays, so it reads nothing.
        load="none" if config.mode == "record" else config.replay_from,
        session=(config.session or session_id()) if config.mode == "record" else None,
        test_id=config.test_id,
    )
