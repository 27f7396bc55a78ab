"""The token matrix on every operation of the notifications spec (enumerated from the spec).

The shared runner (tests/support/token_matrix.py) checks, per operation, every 401 and
403 body and challenge against the one mapping in ``charter.security.tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from notifications_support import EMAIL, InMemoryProvider

from charter import specs
from charter.testing import SpecOperation, TokenFactory, spec_operations
from tests.support.plugin import TokenMatrix, assert_problem, bearer, each_operation

SPEC = specs.load("notifications")
ALL_SCOPES = specs.scopes(SPEC)
KNOWN_ID = "known"  # replaced by the id of a notification sent in prepare()


@dataclass(frozen=True)
class Example:
    """How to call one operation successfully."""

    path_params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=lambda: {"role": "service"})
    needs_notification: bool = False


EXAMPLES: dict[str, Example] = {
    "send_notification": Example(body=EMAIL, headers={"Idempotency-Key": "matrix-key-0001"}),
    "list_notifications": Example(claims={"role": "staff"}),
    "get_notification": Example(path_params={"notification_id": KNOWN_ID},
                                claims={"role": "staff"}, needs_notification=True),
}


OPERATIONS = spec_operations("notifications")


def test_every_operation_has_an_example() -> None:
    assert {op.operation_id for op in OPERATIONS} == set(EXAMPLES)


def test_sending_is_internal_to_orders() -> None:
    declared = {op.operation_id: op.spec.get("x-internal-callers") for op in OPERATIONS}
    assert declared == {"send_notification": ["orders"], "list_notifications": None,
                        "get_notification": None}


def prepare(client: Any, tokens: TokenFactory, op: SpecOperation) -> dict[str, Any]:
    params = dict(EXAMPLES[op.operation_id].path_params)
    if EXAMPLES[op.operation_id].needs_notification:
        headers = bearer(tokens.token(sub="orders", role="service",
                                      scope="notifications:write"))
        r = client.post("/v1/notifications", json=EMAIL,
                        headers={**headers, "Idempotency-Key": "prepare-key-01"})
        assert r.status_code == 201, r.text
        params["notification_id"] = r.json()["id"]
    return params


def call(client: Any, op: SpecOperation, headers: dict[str, str] | None = None,
         params: dict[str, Any] | None = None) -> Any:
    example = EXAMPLES[op.operation_id]
    path_params = params or {**example.path_params}
    if path_params.get("notification_id") == KNOWN_ID:
        path_params["notification_id"] = "00000000-0000-4000-8000-000000000000"
    url = "/v1" + op.path.format(**path_params)
    kwargs: dict[str, Any] = {"headers": {**example.headers, **(headers or {})}}
    if example.body is not None:
        kwargs["json"] = example.body
    return client.request(op.method, url, **kwargs)


@each_operation("notifications")
def test_token_matrix(client: Any, token_matrix: TokenMatrix, op: SpecOperation,
                      provider: InMemoryProvider) -> None:
    """No/unusable header and every bad token → the shared 401s; a token lacking the
    scope (with the role the operation needs) → the shared 403; nothing is sent."""
    token_matrix.run(op, lambda headers: call(client, op, headers), all_scopes=ALL_SCOPES,
                     claims=EXAMPLES[op.operation_id].claims)
    assert provider.sent == []


@each_operation("notifications")
def test_valid_token_is_2xx(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    params = prepare(client, tokens, op)
    claims = EXAMPLES[op.operation_id].claims
    token = tokens.token(sub="x", scope=" ".join(sorted(op.scopes)), **claims)
    response = call(client, op, bearer(token), params)
    assert 200 <= response.status_code < 300, response.text


@each_operation("notifications")
def test_customers_with_the_scope_are_403(client: Any, tokens: TokenFactory,
                                          op: SpecOperation) -> None:
    params = prepare(client, tokens, op)
    token = tokens.token(sub="alice", scope=" ".join(sorted(ALL_SCOPES)), role="customer")
    assert_problem(call(client, op, bearer(token), params), 403)


@each_operation("notifications")
def test_operations_document_the_standard_problems(op: SpecOperation) -> None:
    def content(status: str) -> dict[str, Any]:
        response = op.spec["responses"][status]
        ref = response.get("$ref", "")
        if ref.startswith("#/components/responses/"):
            response = SPEC["components"]["responses"][ref.rsplit("/", 1)[1]]
        found: dict[str, Any] = response["content"]
        return found

    for status in ("400", "401", "403"):
        assert "application/problem+json" in content(status), status
    if op.operation_id == "send_notification":
        for status in ("409", "422", "502", "503"):
            assert "application/problem+json" in content(status), status


def test_operation_ids_summary_tags_and_bodies() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    for op in OPERATIONS:
        assert op.operation_id == op.operation_id.lower()
        assert op.operation_id.replace("_", "").isalnum()
        assert op.spec.get("summary") and op.spec.get("tags")
    schemas = SPEC["components"]["schemas"]
    for branch in ("EmailCreate", "SmsCreate"):  # NotificationCreate is oneOf these
        assert schemas[branch]["additionalProperties"] is False
