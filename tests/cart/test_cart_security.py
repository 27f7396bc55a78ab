"""The token matrix on every operation of the cart spec (enumerated from the spec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from cart_stubs import bearer

from charter import specs
from charter.testing import (
    SpecOperation,
    TokenFactory,
    assert_bad_tokens_refused,
    spec_operations,
)

SPEC = specs.load("cart")
ALL_SCOPES = set(specs.scopes(SPEC))
PRODUCT = 1


@dataclass(frozen=True)
class Example:
    """How to call one operation successfully."""

    path_params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    needs_line: bool = False  # the caller's cart must hold PRODUCT first


EXAMPLES: dict[str, Example] = {
    "get_cart": Example(),
    "clear_cart": Example(),
    "add_item": Example(body={"product_id": PRODUCT, "quantity": 1}),
    "set_item_quantity": Example(
        path_params={"product_id": PRODUCT}, body={"quantity": 2}, needs_line=True
    ),
    "remove_item": Example(path_params={"product_id": PRODUCT}, needs_line=True),
    "get_user_cart": Example(path_params={"user_id": "bob"}, claims={"role": "staff"}),
}


OPERATIONS = spec_operations("cart")


def test_every_operation_has_an_example() -> None:
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLES)


def test_every_operation_declares_its_own_security_and_scopes() -> None:
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                assert op.get("security"), (path, method)
                assert all(names for req in op["security"] for names in req.values())


def call(
    client: Any, op: SpecOperation, headers: dict[str, str] | None = None
) -> Any:
    example = EXAMPLES[op.operation_id]
    url = "/v1" + op.path.format(**example.path_params)
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if example.body is not None:
        kwargs["json"] = example.body
    return client.request(op.method, url, **kwargs)


def prepare(client: Any, tokens: TokenFactory, op: SpecOperation, sub: str) -> None:
    if EXAMPLES[op.operation_id].needs_line:
        r = client.post(
            "/v1/cart/items",
            json={"product_id": PRODUCT, "quantity": 1},
            headers=bearer(tokens.token(sub=sub, scope="cart:write")),
        )
        assert r.status_code == 201, r.text


def assert_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_no_token_is_401(client: Any, op: SpecOperation) -> None:
    assert_problem(call(client, op), 401)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_bad_tokens_are_401(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    assert_bad_tokens_refused(
        lambda headers: call(client, op, headers), tokens, op.scopes, assert_problem
    )


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_missing_scope_is_403(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    claims = EXAMPLES[op.operation_id].claims
    others = " ".join(sorted(ALL_SCOPES - op.scopes))
    for scope in ("", others):
        response = call(client, op, bearer(tokens.token(sub="alice", scope=scope, **claims)))
        assert_problem(response, 403)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_valid_token_is_2xx(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    example = EXAMPLES[op.operation_id]
    prepare(client, tokens, op, "alice")
    token = tokens.token(sub="alice", scope=" ".join(sorted(op.scopes)), **example.claims)
    response = call(client, op, bearer(token))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_operations_document_the_standard_problems(op: SpecOperation) -> None:
    responses = SPEC["paths"][op.path][op.method.lower()]["responses"]
    for status in ("400", "401", "403", "404", "422", "503"):
        assert status in responses, (op.operation_id, status)
        content = responses[status]["content"]
        assert "application/problem+json" in content
