"""The token matrix on every operation of the catalog spec, enumerated from the spec.

For each operation: no token → 401, every kind of bad token → 401, a token without the
operation's scope → 403, a valid token → 2xx. A new operation in the spec is covered
automatically; it only needs an example body below (a test checks that every one has).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from charter import specs
from charter.testing import TokenFactory

SPEC = specs.load("catalog")
METHODS = ("get", "put", "post", "patch", "delete")
ALL = {"catalog:read", "catalog:write", "catalog:reserve"}


def deref(node: Any) -> Any:
    """Follow a local ``#/…`` reference of the bundled spec."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(operationId, method, path, operation) for every operation of the spec."""
    found = []
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                params = item.get("parameters", []) + op.get("parameters", [])
                op = {**op, "parameters": [deref(p) for p in params]}
                found.append((op["operationId"], method, path, op))
    return found


OPERATIONS = operations()

# A valid request body per operationId (None: the operation takes no body). The path
# parameters come from the ``seeded`` fixture; see ``path_values``.
EXAMPLE_BODIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "list_categories": lambda s: None,
    "create_category": lambda s: {"slug": "tea", "name": "Tea", "description": "Loose leaf"},
    "get_category": lambda s: None,
    "update_category": lambda s: {"name": "Nothing here"},
    "delete_category": lambda s: None,
    "list_products": lambda s: None,
    "create_product": lambda s: {"sku": "TEA-0001", "name": "Earl Grey 100 g",
                                 "category_id": s["category"]["id"], "price": 690,
                                 "currency": "EUR"},
    "get_product": lambda s: None,
    "update_product": lambda s: {"price": 2590},
    "delete_product": lambda s: None,
    "get_stock": lambda s: None,
    "set_stock": lambda s: {"on_hand": 25},
    "adjust_stock": lambda s: {"delta": 5, "reason": "goods receipt"},
    "create_reservation": lambda s: {"order_id": f"order-{uuid.uuid4().hex[:8]}",
                                     "items": [{"product_id": s["spare"]["id"], "quantity": 1}]},
    "get_reservation": lambda s: None,
    "commit_reservation": lambda s: None,
    "release_reservation": lambda s: None,
}


def path_values(seeded: dict[str, Any]) -> dict[str, Any]:
    return {
        "category_id": seeded["empty_category"]["id"],
        "product_id": seeded["product"]["id"],
        "order_id": seeded["order_id"],
    }


def required_scopes(op: dict[str, Any]) -> set[str]:
    scopes: set[str] = set()
    for requirement in op.get("security", SPEC.get("security", [])):
        for names in requirement.values():
            scopes.update(names)
    return scopes


def build_request(op: dict[str, Any], path: str, seeded: dict[str, Any]) -> dict[str, Any]:
    """URL, headers and body of a valid call of ``op``."""
    values = path_values(seeded)
    headers: dict[str, str] = {}
    url = "/v1" + path
    for param in op["parameters"]:
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(values[param["name"]]))
        elif param["in"] == "header" and param.get("required"):
            assert param["name"] == "Idempotency-Key", f"no example for header {param['name']}"
            headers[param["name"]] = f"key-{uuid.uuid4().hex}"
        elif param.get("required"):
            raise AssertionError(f"no example for required {param['in']} {param['name']}")
    body = EXAMPLE_BODIES[op["operationId"]](seeded)
    return {"url": url, "headers": headers, "body": body}


def call(client: Any, method: str, req: dict[str, Any], token: str | None) -> Any:
    headers = dict(req["headers"])
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"headers": headers}
    if req["body"] is not None:
        kwargs["json"] = req["body"]
    return client.request(method.upper(), req["url"], **kwargs)


def test_every_operation_has_an_example_body() -> None:
    ids = [op_id for op_id, *_ in OPERATIONS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert set(ids) == set(EXAMPLE_BODIES)


def test_every_operation_declares_one_catalog_scope() -> None:
    for op_id, _, _, op in OPERATIONS:
        scopes = required_scopes(op)
        assert len(scopes) == 1 and scopes <= ALL, op_id


def test_scopes_by_kind_of_operation() -> None:
    reads = {"list_categories", "get_category", "list_products", "get_product", "get_stock"}
    reserve = {"create_reservation", "get_reservation", "commit_reservation",
               "release_reservation"}
    for op_id, _, _, op in OPERATIONS:
        expected = ("catalog:read" if op_id in reads
                    else "catalog:reserve" if op_id in reserve else "catalog:write")
        assert required_scopes(op) == {expected}, op_id


@pytest.mark.parametrize(("op_id", "method", "path", "op"), OPERATIONS,
                         ids=[o[0] for o in OPERATIONS])
def test_token_matrix(client: Any, tokens: TokenFactory, seeded: dict[str, Any],
                      op_id: str, method: str, path: str, op: dict[str, Any]) -> None:
    scopes = required_scopes(op)
    scope = " ".join(sorted(scopes))
    req = build_request(op, path, seeded)

    response = call(client, method, req, None)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")

    for name, bad in tokens.bad_tokens(scope).items():
        response = call(client, method, req, bad)
        assert response.status_code == 401, f"{op_id} with {name} token: {response.text}"

    other = " ".join(sorted(ALL - scopes))
    response = call(client, method, req, tokens.token(scope=other))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")

    response = call(client, method, req, tokens.token(scope=scope))
    assert 200 <= response.status_code < 300, f"{op_id}: {response.status_code} {response.text}"
    documented = {int(code) for code in op["responses"] if code.isdigit() and code < "300"}
    assert response.status_code in documented
