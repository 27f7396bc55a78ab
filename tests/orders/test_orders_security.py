"""The shared token matrix (tests/support/token_matrix.py) on every operation of the orders
spec (enumerated from the spec), ownership and roles, Idempotency-Key, and the spec's own
governance rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from orders_fakes import InMemoryPayments
from orders_support import new_key, payment_for

from charter import specs
from charter.testing import SpecOperation, TokenFactory, spec_operations
from tests.support.plugin import TokenMatrix, assert_problem, bearer, each_operation

SPEC = specs.load("orders")
ALL_SCOPES = set(specs.scopes(SPEC))
CART_SCOPES = {"cart:read", "cart:write"}  # a customer's token also holds these
ORDER = "{order}"  # replaced by an order alice placed
PAYMENT = "{payment}"  # replaced by a matching payment of that order


@dataclass(frozen=True)
class Example:
    """How to call one operation successfully."""

    path_params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    claims: dict[str, Any] = field(default_factory=lambda: {"role": "customer"})
    keyed: bool = False


EXAMPLES: dict[str, Example] = {
    "place_order": Example(body={"items": [{"product_id": 1, "quantity": 1}]}, keyed=True),
    "list_orders": Example(),
    "get_order": Example(path_params={"order_id": ORDER}),
    "cancel_order": Example(path_params={"order_id": ORDER}, keyed=True),
    "confirm_order": Example(path_params={"order_id": ORDER}, body={"payment_id": PAYMENT},
                             keyed=True),
}


OPERATIONS = spec_operations("orders")


@pytest.fixture
def fixtures(client: Any, tokens: TokenFactory, payments: InMemoryPayments) -> dict[str, str]:
    """An order alice placed and a payment that fits it."""
    headers = {**bearer(tokens.token(sub="alice", scope="orders:write", role="customer")),
               "Idempotency-Key": new_key()}
    r = client.post("/v1/orders", json={"items": [{"product_id": 1, "quantity": 1}]},
                    headers=headers)
    assert r.status_code == 201, r.text
    payment = payments.put(payment_for(r.json()))
    return {"order": r.json()["id"], "payment": payment.id}


def fill(value: Any, fixtures: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**fixtures)
    if isinstance(value, dict):
        return {k: fill(v, fixtures) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, fixtures) for v in value]
    return value


def call(client: Any, op: SpecOperation, fixtures: dict[str, str],
         headers: dict[str, str] | None = None) -> Any:
    example = EXAMPLES[op.operation_id]
    url = "/v1" + op.path.format(**fill(example.path_params, fixtures))
    all_headers = dict(headers or {})
    if example.keyed:
        all_headers["Idempotency-Key"] = new_key()
    kwargs: dict[str, Any] = {"headers": all_headers}
    if example.body is not None:
        kwargs["json"] = fill(example.body, fixtures)
    return client.request(op.method, url, **kwargs)


def test_every_operation_has_an_example() -> None:
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLES)


def test_every_operation_declares_its_own_security_and_scopes() -> None:
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                assert op.get("security"), (path, method)
                assert all(names for req in op["security"] for names in req.values())
                assert set(op["security"][0]["oauth2"]) <= {"orders:read", "orders:write"}


@each_operation("orders")
def test_token_matrix(client: Any, token_matrix: TokenMatrix, fixtures: dict[str, str],
                      op: SpecOperation) -> None:
    """The shared matrix: no token, unusable headers and every bad token (``alg: none``,
    HS256 with the public key, unknown ``kid``, missing ``sub``/``jti``, ``nbf`` ahead,
    another audience…) → the same 401 problem; a customer token without the scope (none,
    an unrelated one, every other orders and cart scope) → 403; the right one → 2xx."""
    claims = EXAMPLES[op.operation_id].claims

    def request(headers: dict[str, str]) -> Any:
        return call(client, op, fixtures, headers)

    token_matrix.run(op, request, all_scopes=ALL_SCOPES | CART_SCOPES, claims=claims)
    response = request(token_matrix.valid_headers(op, sub="alice", **claims))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("op", [o for o in OPERATIONS if "{order_id}" in o.path], ids=str)
def test_someone_elses_order_is_404(client: Any, tokens: TokenFactory,
                                    fixtures: dict[str, str], op: SpecOperation) -> None:
    token = tokens.token(sub="mallory", scope=" ".join(sorted(op.scopes)), role="customer")
    assert_problem(call(client, op, fixtures, bearer(token)), 404)


@pytest.mark.parametrize("role", ["staff", "admin", "service"])
@pytest.mark.parametrize("op", [o for o in OPERATIONS if "{order_id}" in o.path], ids=str)
def test_privileged_roles_act_on_any_order(client: Any, tokens: TokenFactory,
                                           fixtures: dict[str, str], op: SpecOperation,
                                           role: str) -> None:
    token = tokens.token(sub=f"{role}-1", scope=" ".join(sorted(op.scopes)), role=role)
    response = call(client, op, fixtures, bearer(token))
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize("op", [o for o in OPERATIONS if EXAMPLES[o.operation_id].keyed],
                         ids=str)
def test_unsafe_operations_require_an_idempotency_key(
    client: Any, tokens: TokenFactory, fixtures: dict[str, str], op: SpecOperation
) -> None:
    example = EXAMPLES[op.operation_id]
    token = tokens.token(sub="alice", scope=" ".join(sorted(op.scopes)), role="customer")
    url = "/v1" + op.path.format(**fill(example.path_params, fixtures))
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if example.body is not None:
        kwargs["json"] = fill(example.body, fixtures)
    assert_problem(client.request(op.method, url, **kwargs), 400)
    for bad in ("short", "x" * 129, "has space", "semi;colon"):
        kwargs["headers"] = {**bearer(token), "Idempotency-Key": bad}
        assert_problem(client.request(op.method, url, **kwargs), 400)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_operations_document_the_standard_problems(op: SpecOperation) -> None:
    operation = SPEC["paths"][op.path][op.method.lower()]
    responses = operation["responses"]
    for status in ("400", "401", "403", "404", "409", "422", "503"):
        assert status in responses, (op.operation_id, status)
        response = responses[status]
        if "$ref" in response:  # a local reference: #/components/responses/<name>
            response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        content = response["content"]
        assert "application/problem+json" in content
    if op.method == "POST":
        params = [p.get("name") for p in operation.get("parameters", [])]
        assert "Idempotency-Key" in params, op.operation_id


def test_request_bodies_forbid_unknown_properties() -> None:
    schemas = SPEC["components"]["schemas"]
    for name in ("OrderCreate", "OrderConfirm", "OrderItemRequest"):
        assert schemas[name]["additionalProperties"] is False, name
