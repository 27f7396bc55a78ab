"""Every spec declares the problem types its API can answer (``x-problem-types``), as the
registry's service mapping says, and the shared Problem schema accepts every type URI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from charter import config, problem_types, problems

SPECS = sorted((config.OPENAPI_DIR).glob("*/v*.yaml"))
COMMON = config.OPENAPI_DIR / "common" / "problem.yaml"


def _load(path: Path) -> dict:  # type: ignore[type-arg]
    loaded: dict = yaml.safe_load(path.read_text())  # type: ignore[type-arg]
    return loaded


@pytest.mark.parametrize("path", SPECS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_spec_declares_every_type_its_service_can_answer(path: Path) -> None:
    spec = _load(path)
    api = path.parent.name
    deprecated = spec["info"].get("x-lifecycle") == "deprecated"
    expected = problem_types.for_api(api, deprecated=deprecated)
    declared = spec.get("x-problem-types")
    assert isinstance(declared, list), f"{path}: no x-problem-types list"
    assert set(declared) <= set(problem_types.TYPES), set(declared) - set(problem_types.TYPES)
    assert declared == expected, (
        f"{path.relative_to(config.ROOT)}: x-problem-types must be {expected} "
        f"(missing {sorted(set(expected) - set(declared))}, "
        f"extra {sorted(set(declared) - set(expected))})")


def test_the_problem_schema_bounds_and_accepts_every_type_uri() -> None:
    schema = _load(COMMON)["components"]["schemas"]["Problem"]
    type_schema = schema["properties"]["type"]
    assert "type" in schema["required"]
    assert type_schema["format"] == "uri" and type_schema["maxLength"] <= 2048
    pattern = re.compile(type_schema["pattern"])
    assert pattern.search(type_schema["example"])
    for slug in problem_types.TYPES:
        uri = problems.type_uri(slug)
        assert pattern.search(uri) and len(uri) <= type_schema["maxLength"], uri
    assert not pattern.search("about:blank")
    for name, prop in schema["properties"].items():
        if prop.get("type") == "string":
            assert "maxLength" in prop, name
