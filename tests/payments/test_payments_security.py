"""The token matrix on every operation of the payments spec, enumerated from the spec.

For each operation: no token → 401, every kind of bad token → 401, a token without the
operation's scope → 403, a valid token → 2xx. A new operation is covered automatically;
it only needs an example below (a test checks that every one has).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from payments_support import Caller, payment_body

from charter import specs
from charter.testing import SpecOperation, TokenFactory, assert_token_refusals, spec_operations

SPEC = specs.load("payments")
ALL = {"payments:read", "payments:write"}
UNSAFE = {"authorize_payment", "capture_payment", "void_payment", "refund_payment"}


OPERATIONS = spec_operations("payments")

# A valid request body per operationId (None: no body), and the payment each acts on:
# "authorized" (fresh) or "captured".
EXAMPLES: dict[str, tuple[Callable[[], Any], str]] = {
    "authorize_payment": (lambda: payment_body(order_id=f"ord-{uuid.uuid4().hex[:8]}"),
                          "authorized"),
    "list_payments": (lambda: None, "authorized"),
    "get_payment": (lambda: None, "authorized"),
    "capture_payment": (lambda: {"amount": 1000}, "authorized"),
    "void_payment": (lambda: None, "authorized"),
    "refund_payment": (lambda: {"amount": 100, "reason": "goodwill"}, "captured"),
}


def test_every_operation_has_an_example() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert set(ids) == set(EXAMPLES)


def test_scopes_by_kind_of_operation() -> None:
    for op in OPERATIONS:
        op_id = op.operation_id
        expected = "payments:write" if op_id in UNSAFE else "payments:read"
        assert op.scopes == {expected}, op_id
        assert (op.method == "GET") == (op_id not in UNSAFE)


def test_unsafe_operations_take_an_idempotency_key() -> None:
    for op in OPERATIONS:
        op_id = op.operation_id
        headers = [p for p in op.parameters if p["in"] == "header"]
        if op_id in UNSAFE:
            assert [h["name"] for h in headers] == ["Idempotency-Key"], op_id
            assert headers[0]["required"] is True
        else:
            assert headers == [], op_id
        # customers authorise through the gateway and staff refund through it: no
        # operation is restricted to service-to-service callers
        assert "x-internal-callers" not in op.spec, op_id


def test_the_spec_follows_the_house_conventions() -> None:
    info = SPEC["info"]
    assert SPEC["openapi"] == "3.0.3" and info["version"] == "1.0.0"
    assert info["x-owner"] == "team-payments" and info["x-lifecycle"] == "production"
    for op in OPERATIONS:
        assert op.spec["summary"] and op.spec["tags"], op.operation_id
        for code in ("400", "401", "403"):
            assert code in op.spec["responses"], (op.operation_id, code)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_token_matrix(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    scope = " ".join(sorted(op.scopes))
    make_body, state = EXAMPLES[op.operation_id]
    owner = Caller(client, tokens, "user-1", "customer")  # authorises its own payment
    payment = owner.authorize().json()
    if state == "captured":
        owner.capture(payment["id"])
    url = "/v1" + op.path.replace("{payment_id}", payment["id"])
    body = make_body()

    def call(token: str | None) -> Any:
        headers: dict[str, str] = {}
        if any(p["in"] == "header" for p in op.parameters):
            headers["Idempotency-Key"] = f"key-{uuid.uuid4().hex}"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        return client.request(op.method, url, **kwargs)

    other = " ".join(sorted(ALL - op.scopes))
    assert_token_refusals(call, tokens, scope=scope,
                          forbidden=tokens.token(scope=other, role="customer"),
                          label=op.operation_id)

    # a customer token for the payment's owner ("user-1") with just the needed scope
    response = call(tokens.token(sub="user-1", scope=scope, role="customer"))
    assert 200 <= response.status_code < 300, (
        f"{op.operation_id}: {response.status_code} {response.text}")
    documented = {int(code) for code in op.spec["responses"]
                  if code.isdigit() and code < "300"}
    assert response.status_code in documented
