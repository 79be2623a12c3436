"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from starlette.routing import Route

from switchyard.config import Config
from switchyard.server.app import create_app
from switchyard.server.openapi import build_document


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
