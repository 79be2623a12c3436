"""What the chat handler hands the store: a record of plain values, whatever the provider sent."""

from __future__ import annotations

import marshal
from typing import Any

import pytest

from switchyard.server.chat import _record


class PluginId(str):
    """What a plugin provider might give as its completion's id."""


@pytest.mark.parametrize(
    ("given", "kept"),
    [("prov-1", "prov-1"), (None, None), (PluginId("prov-2"), "prov-2"), (42, "42")],
)
def test_the_providers_id_is_kept_as_a_plain_str(given: Any, kept: str | None) -> None:
    record = _record(b"{}", b"{}", "openai", 1.0, given, False, "key-1", {"id": "chatcmpl-1"})
    assert record[5] == kept and type(record[5]) is type(kept)
    assert record[7] == "key-1"  # the caller
    # The writer process gets records by marshal, which refuses a str subclass.
    assert marshal.loads(marshal.dumps(record)) == record
