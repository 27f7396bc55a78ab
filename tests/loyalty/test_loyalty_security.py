"""The token matrix on every operation of the loyalty spec (enumerated from the spec).

The shared runner (tests/support/token_matrix.py) checks, per operation, every 401 and
403 body and challenge against the one mapping in ``charter.security.tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from charter import specs
from charter.testing import SpecOperation, TokenFactory, spec_operations
from tests.support.plugin import TokenMatrix, assert_problem, bearer, each_operation

SPEC = specs.load("loyalty")
ALL_SCOPES = specs.scopes(SPEC)
SERVICE: dict[str, Any] = {"role": "service", "client_id": "orders"}


@dataclass(frozen=True)
class Example:
    """How to call one operation successfully."""

    path_params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    claims: dict[str, Any] = field(default_factory=lambda: {"role": "customer"})
    award: bool = False       # alice holds an award for order "ord-a" (100 points)
    redemption: bool = False  # alice redeemed 10 points for order "ord-r"


EXAMPLES: dict[str, Example] = {
    "get_balance": Example(),
    "get_history": Example(),
    "get_customer_balance": Example(path_params={"customer_id": "bob"},
                                    claims={"role": "staff"}),
    "get_customer_history": Example(path_params={"customer_id": "bob"},
                                    claims={"role": "staff"}),
    "create_award": Example(body={"customer_id": "bob", "order_id": "ord-new",
                                  "amount": 1000, "currency": "EUR"}, claims=SERVICE),
    "get_award": Example(path_params={"order_id": "ord-a"}, award=True),
    "reverse_award": Example(path_params={"order_id": "ord-a"}, claims=SERVICE, award=True),
    "create_redemption": Example(body={"order_id": "ord-new", "points": 5}, award=True),
    "get_redemption": Example(path_params={"order_id": "ord-r"}, redemption=True),
    "reverse_redemption": Example(path_params={"order_id": "ord-r"}, claims=SERVICE,
                                  redemption=True),
}

INTERNAL = {"create_award", "reverse_award", "reverse_redemption"}


OPERATIONS = spec_operations("loyalty")


def test_every_operation_has_an_example() -> None:
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLES)


def test_internal_operations_declare_their_callers() -> None:
    declared = {op.operation_id: op.spec.get("x-internal-callers") for op in OPERATIONS}
    assert {k for k, v in declared.items() if v} == INTERNAL
    for name in INTERNAL:
        assert declared[name] == ["orders"]
        assert EXAMPLES[name].claims.get("role") == "service"


def prepare(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    example = EXAMPLES[op.operation_id]
    service = bearer(tokens.token(sub="orders", scope="loyalty:write", **SERVICE))
    if example.award or example.redemption:
        r = client.post("/v1/awards", json={"customer_id": "alice", "order_id": "ord-a",
                                            "points": 100}, headers=service)
        assert r.status_code == 201, r.text
    if example.redemption:
        r = client.post("/v1/redemptions", json={"order_id": "ord-r", "points": 10,
                                                 "customer_id": "alice"}, headers=service)
        assert r.status_code == 201, r.text


def call(client: Any, op: SpecOperation, headers: dict[str, str] | None = None) -> Any:
    example = EXAMPLES[op.operation_id]
    url = "/v1" + op.path.format(**example.path_params)
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if example.body is not None:
        kwargs["json"] = example.body
    return client.request(op.method, url, **kwargs)


@each_operation("loyalty")
def test_token_matrix(client: Any, token_matrix: TokenMatrix, op: SpecOperation) -> None:
    """No/unusable header and every bad token → the shared 401s; a token lacking the
    scope (with the role the operation needs) → the shared 403."""
    token_matrix.run(op, lambda headers: call(client, op, headers), all_scopes=ALL_SCOPES,
                     claims=EXAMPLES[op.operation_id].claims)


@each_operation("loyalty")
def test_valid_token_is_2xx(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    prepare(client, tokens, op)
    claims = EXAMPLES[op.operation_id].claims
    token = tokens.token(sub="alice", scope=" ".join(sorted(op.scopes)), **claims)
    response = call(client, op, bearer(token))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("op", [o for o in OPERATIONS if o.operation_id in INTERNAL], ids=str)
def test_internal_operations_refuse_customers_with_the_scope(
    client: Any, tokens: TokenFactory, op: SpecOperation
) -> None:
    prepare(client, tokens, op)
    token = tokens.token(sub="alice", scope="loyalty:read loyalty:write", role="customer")
    assert_problem(call(client, op, bearer(token)), 403)


@each_operation("loyalty")
def test_operations_document_the_standard_problems(op: SpecOperation) -> None:
    responses = op.spec["responses"]
    for status in ("400", "401", "403"):
        assert "application/problem+json" in responses[status]["content"], status
    if op.method == "POST":
        assert "409" in responses


def test_request_bodies_refuse_unknown_properties() -> None:
    schemas = SPEC["components"]["schemas"]
    for name in ("AwardCreate", "RedemptionCreate"):
        assert schemas[name]["additionalProperties"] is False
