"""When a request matches a recording, and, when none does, which one came closest.

A request matches on method, path (normalised: host and base-URL prefix dropped, a doubled
``/v1/v1`` read as ``/v1``) and canonical JSON body: keys sorted, ``null`` members and a
top-level ``"stream": false`` dropped (OpenAI reads both as absent), floats rounded to
:data:`FLOAT_DIGITS` decimals and whole floats written as integers (``1.0 == 1``), and
ignored fields removed. An ignored field is a dotted path through objects, looking through
lists: ``user``, ``seed`` or ``messages.name`` (the ``name`` of every message).

A miss is explained by :func:`differences`: the dotted paths where the closest recorded
body and the request disagree, such as ``messages[0].content`` or ``temperature``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from switchyard.errors import ConfigError

__all__ = [
    "FLOAT_DIGITS",
    "Difference",
    "IgnoreTree",
    "canonical",
    "canonical_body",
    "describe",
    "differences",
    "ignore_tree",
    "match_key",
    "sorted_json",
]

FLOAT_DIGITS = 6

IgnoreTree = dict[str, Any]
"""Ignored fields as a tree: ``{"user": None, "metadata": {"trace": None}}``; a ``None``
leaf drops the member, a subtree drops members below it."""

_INDEX = re.compile(r"\[\d*\]")
_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "<absent>"})()


def ignore_tree(fields: Iterable[str]) -> IgnoreTree:
    """Parse dotted field names into the tree :func:`canonical` walks."""
    tree: IgnoreTree = {}
    for name in fields:
        if name.endswith("]"):
            # input[1] would ignore all of input: every embedding request would match.
            raise ConfigError(
                f"ignore_fields: '{name}' names an item of a list, which cannot be left out "
                "of matching alone; name a field of the items (messages[0].content, "
                "which means that field of every message) or the whole list"
            )
        # messages[0].content (as a miss names it) and messages[].content are
        # messages.content: a path looks through lists, whatever the index.
        *parents, leaf = _INDEX.sub("", name).split(".")
        node: IgnoreTree | None = tree
        for part in parents:
            # A None child means an ancestor is already ignored whole: nothing to add.
            node = None if node is None else node.setdefault(part, {})
        if node is not None:
            node[leaf] = None
    return tree


def canonical(value: Any, ignore: IgnoreTree | None = None) -> Any:
    """The value as matching compares it (see the module docstring)."""
    if isinstance(value, dict):
        ignore = ignore or {}
        out: dict[str, Any] = {}
        for key in sorted(value):
            item = value[key]
            sub = ignore.get(key, {})
            if item is None or sub is None:
                continue
            out[key] = canonical(item, sub)
        return out
    if isinstance(value, list):
        return [canonical(item, ignore) for item in value]
    if isinstance(value, float):
        rounded = round(value, FLOAT_DIGITS)
        # Whole floats as integers, within the 64 bits orjson writes (1e20 stays a float).
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**63 else rounded
    return value


def sorted_json(value: Any) -> Any:
    """``value`` with object keys sorted at every depth, otherwise unchanged (for storing
    request bodies in a stable, diffable order)."""
    if isinstance(value, dict):
        return {key: sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json(item) for item in value]
    return value


def match_key(method: str, path: str, body: Any, ignore: IgnoreTree | None = None) -> bytes:
    """The identity of a request for matching: equal keys, same recording."""
    return b"%s %s %s" % (
        method.upper().encode(),
        path.encode(),
        orjson.dumps(canonical_body(body, ignore)),
    )


def canonical_body(body: Any, ignore: IgnoreTree | None = None) -> Any:
    """A request body as matching compares it: :func:`canonical`, and ``"stream": false``
    read as absent (its default: SDKs omit it where Llama Stack sends it)."""
    value = canonical(body, ignore)
    if isinstance(value, dict) and value.get("stream") is False:
        del value["stream"]
    return value


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where a recorded request and the live one disagree."""

    path: str
    recorded: Any
    got: Any

    def describe(self) -> str:
        recorded, got = self.recorded, self.got
        shown = (describe(recorded), describe(got))
        if isinstance(recorded, str) and isinstance(got, str):
            start = _shared_start(recorded, got)
            if start > _CONTEXT and any(s.endswith("...") for s in shown):
                # Long prompts often share their start, and it would be all that shows:
                # show where they part instead.
                cut = start - _CONTEXT
                shown = (f"...{describe(recorded[cut:])}", f"...{describe(got[cut:])}")
                return f"{self.path}, from character {start} (recorded {shown[0]}, got {shown[1]})"
        return f"{self.path} (recorded {shown[0]}, got {shown[1]})"


# Characters shown before the first one that differs.
_CONTEXT = 20


def _shared_start(a: str, b: str) -> int:
    """How many leading characters two strings have in common."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def differences(recorded: Any, got: Any, path: str = "") -> list[Difference]:
    """Dotted paths (``messages[0].content``) of every leaf where two canonical bodies
    differ; a member present on one side only counts once, however big it is."""
    if isinstance(recorded, dict) and isinstance(got, dict):
        found: list[Difference] = []
        for key in sorted(recorded.keys() | got.keys()):
            where = f"{path}.{key}" if path else key
            found += differences(recorded.get(key, _ABSENT), got.get(key, _ABSENT), where)
        return found
    if isinstance(recorded, list) and isinstance(got, list):
        found = []
        for index in range(max(len(recorded), len(got))):
            left = recorded[index] if index < len(recorded) else _ABSENT
            right = got[index] if index < len(got) else _ABSENT
            found += differences(left, right, f"{path}[{index}]")
        return found
    if recorded == got and type(recorded) is type(got):
        return []
    return [Difference(path or "body", recorded, got)]


def describe(value: Any, limit: int = 80) -> str:
    """A short JSON rendering of a value for error messages."""
    if value is _ABSENT:
        return "absent"
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."
