"""The shared token matrix on every operation of the payments spec, enumerated from it.

For each operation (``tests/support/token_matrix.py``): no token or an unusable header →
401, every bad token of the extended matrix (``alg: none``, HS256 with the public key,
unknown ``kid``, missing ``sub``/``jti``, ``nbf`` in the future, another audience…) → 401
with the one shared body, a customer token lacking the scope → 403, and the owner's valid
token → a documented 2xx. A new operation is covered automatically; it only needs an
example below (a test checks that every one has).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from payments_support import Caller, payment_body

from charter.testing import SpecOperation, TokenFactory, spec_operations
from tests.support.plugin import TokenMatrix, each_operation

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
    # (unique operationIds: tests/test_spec_style.py)
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLES)


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


def test_every_operation_documents_400_401_403() -> None:
    """Beyond the house style every spec follows (tests/test_spec_style.py)."""
    for op in OPERATIONS:
        for code in ("400", "401", "403"):
            assert code in op.spec["responses"], (op.operation_id, code)


@each_operation("payments")
def test_token_matrix(client: Any, tokens: TokenFactory, token_matrix: TokenMatrix,
                      op: SpecOperation) -> None:
    make_body, state = EXAMPLES[op.operation_id]
    owner = Caller(client, tokens, "user-1", "customer")  # authorises its own payment
    payment = owner.authorize().json()
    if state == "captured":
        owner.capture(payment["id"])
    url = "/v1" + op.path.replace("{payment_id}", payment["id"])
    body = make_body()

    def call(headers: dict[str, str]) -> Any:
        extra: dict[str, str] = {}
        if any(p["in"] == "header" for p in op.parameters):
            extra["Idempotency-Key"] = f"key-{uuid.uuid4().hex}"
        kwargs: dict[str, Any] = {"headers": {**extra, **headers}}
        if body is not None:
            kwargs["json"] = body
        return client.request(op.method, url, **kwargs)

    token_matrix.run(op, call, all_scopes=ALL, claims={"role": "customer"})

    # a customer token for the payment's owner ("user-1") with just the needed scope
    response = call(token_matrix.valid_headers(op, sub="user-1", role="customer"))
    assert 200 <= response.status_code < 300, (
        f"{op.operation_id}: {response.status_code} {response.text}")
    documented = {int(code) for code in op.spec["responses"]
                  if code.isdigit() and code < "300"}
    assert response.status_code in documented
