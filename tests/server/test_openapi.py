"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from tests.support.server import thread_server

from switchyard.config import Config
from switchyard.errors import _PASSED_THROUGH, InvalidRequestError, _client_status
from switchyard.server.app import create_app
from switchyard.server.openapi import build_document
from switchyard.server.validation import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    MAX_EMBEDDING_INPUTS,
    MODEL_MAX,
    check_body,
)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(build_document())  # raises, naming the part that breaks the schema


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
    for name, nullable in properties.items():
        schema = _not_null(nullable)
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


def _params(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", [])}


def test_list_parameters_and_their_defaults_are_documented() -> None:
    paths = build_document()["paths"]
    listing = _params(paths["/v1/chat/completions"]["get"])
    assert set(listing) == {"after", "limit", "order", "model", "metadata"}
    assert listing["order"]["schema"]["default"] == "desc"  # newest first, issue 4
    assert listing["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert listing["metadata"]["style"] == "deepObject"
    messages = _params(paths["/v1/chat/completions/{completion_id}/messages"]["get"])
    assert set(messages) == {"completion_id", "after", "limit", "order"}
    assert messages["order"]["schema"]["default"] == "asc"
    update = paths["/v1/chat/completions/{completion_id}"]["post"]
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MetadataUpdate"
    )


def test_each_route_documents_the_errors_it_can_give() -> None:
    paths = build_document()["paths"]
    # Every status a provider's refusal is passed on as, and every upstream failure.
    passed_on = {str(_client_status(status)) for status in _PASSED_THROUGH}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        documented = set(paths[path]["post"]["responses"])
        assert passed_on | {"400", "401", "404", "413", "502", "503", "504"} <= documented
    update = paths["/v1/chat/completions/{completion_id}"]["post"]["responses"]
    assert {"400", "401", "404", "413"} <= set(update)
    assert "401" not in paths["/v1/health"]["get"]["responses"]  # open to probes
    assert "401" in paths["/v1/models"]["get"]["responses"]
    assert "502" not in paths["/v1/chat/completions/{completion_id}"]["delete"]["responses"]
    # A browser's request is judged before routing; a compressed body wherever one is read.
    for path, methods in paths.items():
        for method, operation in methods.items():
            assert "403" in operation["responses"], (method, path)
            assert ("415" in operation["responses"]) is ("requestBody" in operation), path


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without the null it also takes."""
    forms = [f for f in field.get("anyOf", [field]) if f != {"type": "null"}]
    assert len(forms) == 1, field
    return forms[0]


@pytest.mark.parametrize(
    ("schema_name", "fields", "least"),
    [
        ("ChatCompletionRequest", CHAT, {"messages": [{"role": "user", "content": "x"}]}),
        ("CompletionRequest", COMPLETIONS, {"prompt": "x"}),
        ("EmbeddingRequest", EMBEDDINGS, {"input": "x"}),
    ],
)
def test_an_optional_field_documented_as_nullable_takes_null(
    schema_name: str, fields: Any, least: dict[str, Any]
) -> None:
    schema = build_document()["components"]["schemas"][schema_name]
    required = tuple(schema["required"])
    for name, field in schema["properties"].items():
        nullable = {"type": "null"} in field.get("anyOf", ())
        assert nullable is (name not in required), name
        if nullable:  # taken as left out
            check_body({"model": "m", **least, name: None}, fields, required)
        else:
            with pytest.raises(InvalidRequestError, match="Missing required"):
                check_body({"model": "m", **least, name: None}, fields, required)


def test_the_documented_input_limits_are_the_enforced_ones() -> None:
    schemas = build_document()["components"]["schemas"]
    embeddings = schemas["EmbeddingRequest"]["properties"]
    for form in embeddings["input"]["oneOf"]:
        if form.get("minLength") == 1:
            assert EMBEDDINGS["input"]("") is not None
        if form.get("maxItems") == MAX_EMBEDDING_INPUTS:
            item = "x" if form["items"].get("type") == "string" else [1]
            assert EMBEDDINGS["input"]([item] * (MAX_EMBEDDING_INPUTS + 1)) is not None
            assert EMBEDDINGS["input"]([item] * MAX_EMBEDDING_INPUTS) is None
    assert EMBEDDINGS["input"]([1] * (MAX_EMBEDDING_INPUTS * 2)) is None  # token ids: no limit
    model = embeddings["model"]
    assert (model["minLength"], model["maxLength"]) == (1, MODEL_MAX)
    assert EMBEDDINGS["model"]("") is not None and EMBEDDINGS["model"]("m" * (MODEL_MAX + 1))
    assert {"type": "array", "items": {"type": "string"}, "minItems": 1} in schemas[
        "CompletionRequest"
    ]["properties"]["prompt"]["oneOf"]  # required: no null
    assert COMPLETIONS["prompt"]([]) is not None


def test_each_documented_answer_has_the_media_type_served(tmp_path: Path) -> None:
    document = build_document()
    fixed = [p for p, ops in document["paths"].items() if "get" in ops and "{" not in p]
    with thread_server({"data_dir": str(tmp_path)}) as server:  # the store's listing too
        for path in fixed:
            answer = httpx.get(server.url + path)
            assert answer.status_code == 200, path
            (documented,) = document["paths"][path]["get"]["responses"]["200"]["content"]
            assert answer.headers["content-type"].split(";")[0] == documented, path
