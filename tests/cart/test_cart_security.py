"""The shared token matrix on every operation of the cart spec (enumerated from the spec).

For each operation (``tests/support/token_matrix.py``): no token or an unusable header →
401, every bad token of the extended matrix (``alg: none``, HS256 with the public key,
unknown ``kid``, missing ``sub``/``jti``, ``nbf`` in the future, another audience…) → 401
with the one shared body, a token lacking the scope → 403, and a valid token → 2xx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from charter import specs
from charter.testing import SpecOperation, TokenFactory, spec_operations
from tests.support.plugin import TokenMatrix, bearer, each_operation

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


def test_every_operation_has_an_example() -> None:
    assert {op.operation_id for op in spec_operations("cart")} == set(EXAMPLES)


def test_every_operation_declares_its_own_security_and_scopes() -> None:
    """``spec_operations`` refuses an operation without its own requirement or scopes."""
    ops = spec_operations("cart")
    assert ops and all(op.scopes <= ALL_SCOPES and op.scopes for op in ops)


def call_of(client: Any, op: SpecOperation) -> Any:
    """``call(headers)``: the example request of ``op`` with those headers."""
    example = EXAMPLES[op.operation_id]
    url = "/v1" + op.path.format(**example.path_params)

    def call(headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {"headers": headers}
        if example.body is not None:
            kwargs["json"] = example.body
        return client.request(op.method, url, **kwargs)

    return call


def prepare(client: Any, tokens: TokenFactory, op: SpecOperation, sub: str) -> None:
    if EXAMPLES[op.operation_id].needs_line:
        r = client.post(
            "/v1/cart/items",
            json={"product_id": PRODUCT, "quantity": 1},
            headers=bearer(tokens.token(sub=sub, scope="cart:write")),
        )
        assert r.status_code == 201, r.text


@each_operation("cart")
def test_token_matrix(client: Any, tokens: TokenFactory, token_matrix: TokenMatrix,
                      op: SpecOperation) -> None:
    claims = EXAMPLES[op.operation_id].claims
    call = call_of(client, op)
    token_matrix.run(op, call, all_scopes=ALL_SCOPES, claims=claims)

    prepare(client, tokens, op, "alice")
    response = call(token_matrix.valid_headers(op, sub="alice", **claims))
    assert 200 <= response.status_code < 300, response.text


@each_operation("cart")
def test_operations_document_the_standard_problems(op: SpecOperation) -> None:
    """Every cart operation documents these statuses (problem+json: tests/test_spec_style)."""
    for status in ("400", "401", "403", "404", "422", "503"):
        assert status in op.spec["responses"], (op.operation_id, status)
