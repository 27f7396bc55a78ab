"""House style every spec in ``openapi/`` follows (until ``charter gov lint`` exists).

One place for the checks each service's tests used to repeat, now applied to every API:
OpenAPI 3.0.3, owner and lifecycle in ``info``, unique snake_case operationIds with a
summary and tags, the shared OAuth2 scheme, and problem+json for every error response.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from charter import deprecation, specs
from charter.testing import spec_operations
from services.gateway.routes import discover

APIS = sorted({api for api, _ in discover()})
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("api", APIS)
def test_spec_metadata(api: str) -> None:
    doc = specs.load(api)
    assert doc["openapi"] == "3.0.3"
    info = doc["info"]
    assert info["version"] == "1.0.0"
    assert info["title"] and info["description"] and info["contact"]
    assert info["x-owner"] == f"team-{api}"
    # v1 of an API listed in governance/deprecation.yaml says so (orders v1).
    retiring = deprecation.load().find(api, "v1") is not None
    assert info["x-lifecycle"] == ("deprecated" if retiring else "production")
    assert doc["components"]["securitySchemes"]["oauth2"]["type"] == "oauth2"


@pytest.mark.parametrize("api", APIS)
def test_operation_ids_are_unique_snake_case_with_summary_and_tags(api: str) -> None:
    ops = spec_operations(api)
    ids = [op.operation_id for op in ops]
    assert len(ids) == len(set(ids))
    for op in ops:
        assert SNAKE.match(op.operation_id), op.operation_id
        assert op.spec.get("summary") and op.spec.get("tags"), op.operation_id


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:  # the root document's own #/components/… references
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.mark.parametrize("api", APIS)
def test_error_responses_are_problem_json(api: str) -> None:
    doc = specs.load(api)
    for op in spec_operations(api):
        for status, response in op.spec["responses"].items():
            if status.startswith(("4", "5")):
                content = _resolve(doc, response).get("content", {})
                assert "application/problem+json" in content, (op.operation_id, status)
