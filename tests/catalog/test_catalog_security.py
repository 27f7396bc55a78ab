"""The shared token matrix on every operation of the catalog spec, enumerated from it.

For each operation (``tests/support/token_matrix.py``): no token or an unusable header →
401, every bad token of the extended matrix (``alg: none``, HS256 with the public key,
unknown ``kid``, missing ``sub``/``jti``, ``nbf`` in the future, another audience…) → 401
with the one shared body, a token lacking the scope → 403, and a valid token → a
documented 2xx. A new operation in the spec is covered automatically; it only needs an
example body below (a test checks that every one has).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from charter.testing import SpecOperation, spec_operations
from services.catalog.services import CatalogService
from tests.support.plugin import TokenMatrix, each_operation

ALL = {"catalog:read", "catalog:write", "catalog:reserve"}


OPERATIONS = spec_operations("catalog")

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
    "return_reservation": lambda s: None,
}

# What an operation needs beyond ``seeded`` for its valid call to succeed: only a
# committed reservation can be returned (the seeded one is held).
PREPARE: dict[str, Callable[[CatalogService, dict[str, Any]], Any]] = {
    "return_reservation": lambda svc, s: svc.commit_reservation("prep-commit-1", s["order_id"]),
}


def path_values(seeded: dict[str, Any]) -> dict[str, Any]:
    return {
        "category_id": seeded["empty_category"]["id"],
        "product_id": seeded["product"]["id"],
        "order_id": seeded["order_id"],
    }


def build_request(op: SpecOperation, seeded: dict[str, Any]) -> dict[str, Any]:
    """URL, headers and body of a valid call of ``op``."""
    values = path_values(seeded)
    headers: dict[str, str] = {}
    url = "/v1" + op.path
    for param in op.parameters:
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(values[param["name"]]))
        elif param["in"] == "header" and param.get("required"):
            assert param["name"] == "Idempotency-Key", f"no example for header {param['name']}"
            headers[param["name"]] = f"key-{uuid.uuid4().hex}"
        elif param.get("required"):
            raise AssertionError(f"no example for required {param['in']} {param['name']}")
    body = EXAMPLE_BODIES[op.operation_id](seeded)
    return {"url": url, "headers": headers, "body": body}


def call_of(client: Any, op: SpecOperation, seeded: dict[str, Any]) -> Any:
    """``call(headers)``: the valid request of ``op`` with those headers added."""
    req = build_request(op, seeded)

    def call(headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {"headers": {**req["headers"], **headers}}
        if req["body"] is not None:
            kwargs["json"] = req["body"]
        return client.request(op.method, req["url"], **kwargs)

    return call


def test_every_operation_has_an_example_body() -> None:
    # (unique operationIds: tests/test_spec_style.py)
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLE_BODIES)


def test_every_operation_declares_one_catalog_scope() -> None:
    for op in OPERATIONS:
        assert len(op.scopes) == 1 and op.scopes <= ALL, op.operation_id


def test_scopes_by_kind_of_operation() -> None:
    reads = {"list_categories", "get_category", "list_products", "get_product", "get_stock"}
    reserve = {"create_reservation", "get_reservation", "commit_reservation",
               "release_reservation", "return_reservation"}
    for op in OPERATIONS:
        op_id = op.operation_id
        expected = ("catalog:read" if op_id in reads
                    else "catalog:reserve" if op_id in reserve else "catalog:write")
        assert op.scopes == {expected}, op_id


@each_operation("catalog")
def test_token_matrix(client: Any, token_matrix: TokenMatrix, seeded: dict[str, Any],
                      service: CatalogService, op: SpecOperation) -> None:
    if op.operation_id in PREPARE:
        PREPARE[op.operation_id](service, seeded)
    call = call_of(client, op, seeded)
    token_matrix.run(op, call, all_scopes=ALL)

    response = call(token_matrix.valid_headers(op))
    assert 200 <= response.status_code < 300, (
        f"{op.operation_id}: {response.status_code} {response.text}")
    documented = {int(code) for code in op.spec["responses"]
                  if code.isdigit() and code < "300"}
    assert response.status_code in documented
