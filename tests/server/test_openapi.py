"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from switchyard.config import Config
from switchyard.server.app import create_app
from switchyard.server.openapi import build_document
from switchyard.server.validation import CHAT, COMPLETIONS, EMBEDDINGS


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(Config(), providers={})
    served = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.replace(":path}", "}")
        for method in route.methods or ():
            if method != "HEAD" and path != "/openapi.json":
                served.add((method.lower(), path))
    document = build_document()
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert served == documented
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChatCompletionRequest"
    )


@pytest.mark.parametrize(
    ("schema_name", "fields"),
    [
        ("ChatCompletionRequest", CHAT),
        ("CompletionRequest", COMPLETIONS),
        ("EmbeddingRequest", EMBEDDINGS),
    ],
)
def test_documented_bounds_are_the_enforced_ones(schema_name: str, fields: Any) -> None:
    properties = build_document()["components"]["schemas"][schema_name]["properties"]
    checked = 0
    for name, schema in properties.items():
        for option in schema.get("oneOf", [schema]):
            if option.get("type") not in ("integer", "number"):
                continue
            low, high = option.get("minimum"), option.get("maximum")
            for value, ok in ((low, True), (high, True)):
                if value is not None:
                    assert (fields[name](value) is None) is ok, (name, value)
            if low is not None:
                assert fields[name](low - 1) is not None, (name, low - 1)
            if high is not None:
                assert fields[name](high + 1) is not None, (name, high + 1)
            checked += 1
    assert checked >= 1
