"""Regressions of what Schemathesis found on loyalty (tests/fuzz).

``POST /v1/redemptions`` without ``customer_id`` is well-formed (a customer omits it: their
own points), but staff and services must name the customer. The service answered 400 —
"schema-valid request rejected": a 400 says the request is malformed, which the spec
contradicts. It is now the declared 422 for that caller, and still 201 for a customer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.plugin import assert_problem


def test_staff_redeeming_without_customer_is_422(
        client: Any, auth: Callable[..., dict[str, str]]) -> None:
    response = client.post("/v1/redemptions", json={"order_id": "ord-1", "points": 1},
                           headers=auth("staff-1", role="staff"))
    assert_problem(response, 422)
    assert "customer_id is required" in response.json()["detail"]


def test_service_redeeming_without_customer_is_422(
        client: Any, service_auth: dict[str, str]) -> None:
    response = client.post("/v1/redemptions", json={"order_id": "ord-1", "points": 1},
                           headers=service_auth)
    assert_problem(response, 422)
