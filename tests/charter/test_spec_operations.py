"""``charter.testing.spec_operations``: the operations the security tests run on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from charter import specs
from charter.testing import SpecOperation, spec_operations


def write_spec(root: Path, paths: dict[str, Any], **components: Any) -> Path:
    api_dir = root / "demo"
    api_dir.mkdir(parents=True, exist_ok=True)
    doc = {"openapi": "3.0.3", "info": {"title": "Demo", "version": "1.0.0"},
           "paths": paths, "components": components}
    (api_dir / "v1.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


def test_enumerates_operations_in_spec_order_with_scopes_params_and_callers(
    tmp_path: Path,
) -> None:
    spec_dir = write_spec(tmp_path, {
        "/things/{thing_id}": {
            "summary": "not an operation",
            "parameters": [{"$ref": "#/components/parameters/ThingId"}],
            "get": {"operationId": "get_thing", "security": [{"oauth2": ["things:read"]}],
                    "parameters": [{"name": "verbose", "in": "query"}],
                    "responses": {"200": {"description": "ok"}}},
            "delete": {"operationId": "delete_thing",
                       "security": [{"oauth2": ["things:write", "things:admin"]}],
                       "x-internal-callers": ["orders"],
                       "responses": {"204": {"description": "gone"}}},
        },
        "/things": {
            "post": {"operationId": "create_thing", "security": [{"oauth2": ["things:write"]}],
                     "responses": {"201": {"description": "made"}}},
        },
    }, parameters={"ThingId": {"name": "thing_id", "in": "path", "required": True}})

    ops = spec_operations("demo", spec_dir=spec_dir)

    assert ops == [
        SpecOperation("get_thing", "GET", "/things/{thing_id}", frozenset({"things:read"})),
        SpecOperation("delete_thing", "DELETE", "/things/{thing_id}",
                      frozenset({"things:write", "things:admin"}), ("orders",)),
        SpecOperation("create_thing", "POST", "/things", frozenset({"things:write"})),
    ]
    get, delete, create = ops
    assert str(get) == "get_thing"
    assert [p["name"] for p in get.parameters] == ["thing_id", "verbose"]
    assert get.parameters[0] == {"name": "thing_id", "in": "path", "required": True}
    assert [p["name"] for p in delete.parameters] == ["thing_id"]
    assert create.parameters == () and create.internal_callers == ()
    assert delete.spec["x-internal-callers"] == ["orders"]
    assert get.spec["responses"] == {"200": {"description": "ok"}}


def test_an_operation_without_security_fails(tmp_path: Path) -> None:
    spec_dir = write_spec(tmp_path, {"/open": {"get": {"operationId": "open_door",
                                                       "responses": {}}}})
    with pytest.raises(AssertionError, match="open_door has no security requirement"):
        spec_operations("demo", spec_dir=spec_dir)


def test_a_security_requirement_without_scopes_fails(tmp_path: Path) -> None:
    spec_dir = write_spec(tmp_path, {"/open": {"get": {
        "operationId": "open_door", "security": [{"oauth2": []}], "responses": {}}}})
    with pytest.raises(AssertionError, match="open_door has a security requirement"):
        spec_operations("demo", spec_dir=spec_dir)


@pytest.mark.parametrize("api", ["catalog", "cart", "orders", "payments", "exchange",
                                 "loyalty", "notifications"])
def test_every_bundled_spec_enumerates(api: str) -> None:
    doc = specs.load(api)
    ops = spec_operations(api)
    assert {op.operation_id for op in ops} == {
        op["operationId"] for item in doc["paths"].values()
        for key, op in item.items() if key != "parameters"}
    assert set().union(*(op.scopes for op in ops)) == set(specs.scopes(doc))
    assert all("$ref" not in p for op in ops for p in op.parameters)


def test_internal_callers_of_the_catalog() -> None:
    internal = {op.operation_id: op.internal_callers
                for op in spec_operations("catalog") if op.internal_callers}
    assert {"create_reservation", "commit_reservation"} <= set(internal)
    assert set(internal.values()) == {("orders",)}
