"""Bad input is a 400 (schema) or 422 (business rule) problem+json, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from payments_support import Caller, new_key, payment_body

from tests.support.plugin import assert_problem


@pytest.mark.parametrize("body", [
    payment_body(amount=0), payment_body(amount=-5), payment_body(amount=12.5),
    payment_body(amount="4980"), payment_body(amount=100_000_000_001),
    payment_body(currency="eur"), payment_body(currency="EURO"),
    payment_body(order_id=""), payment_body(order_id="has space"), payment_body(order_id=None),
    payment_body(card_number="4242 4242 4242 4242"), payment_body(card_number="42424242"),
    payment_body(card_number="4" * 20), payment_body(card_number=4242424242424242),
    payment_body(card_number=None),  # neither card nor method
    payment_body(method="tok_visa"),  # both card and method
    payment_body(card_number=None, method="visa"), payment_body(customer_id=""),
    payment_body(description="x" * 201), payment_body(colour="red"),
    {}, [], "text", None,
])
def test_bad_authorisation_bodies(alice: Caller, body: Any) -> None:
    response = alice.client.post("/v1/payments", json=body, headers=alice.headers(new_key()))
    assert_problem(response, 400)


def test_failed_luhn_check_is_422(alice: Caller) -> None:
    problem = assert_problem(alice.authorize(card_number="4242424242424241"), 422)
    assert "Luhn" in problem["detail"]


@pytest.mark.parametrize("key", [None, "short", "has space in it", "x" * 129, "semi;colon-123"])
def test_missing_or_bad_idempotency_key(alice: Caller, key: str | None) -> None:
    headers = alice.headers()
    if key is not None:
        headers["Idempotency-Key"] = key
    response = alice.client.post("/v1/payments", json=payment_body(), headers=headers)
    assert_problem(response, 400)


@pytest.mark.parametrize("payment_id", ["1", "pay_123", "pay_" + "G" * 32, "ref_" + "0" * 32])
def test_bad_payment_ids(alice: Caller, payment_id: str) -> None:
    assert_problem(alice.get(payment_id), 400)
    assert_problem(alice.capture(payment_id), 400)


@pytest.mark.parametrize("body", [{"amount": 0}, {"amount": "all"}, {"amount": 1.5},
                                  {"currency": "EUR"}, [], "text"])
def test_bad_capture_bodies(alice: Caller, body: Any) -> None:
    pid = alice.authorize().json()["id"]
    assert_problem(alice.capture(pid, body), 400)
    assert alice.get(pid).json()["status"] == "authorized"


@pytest.mark.parametrize("body", [{"amount": -1}, {"reason": "x" * 201}, {"extra": True}])
def test_bad_refund_bodies(alice: Caller, body: Any) -> None:
    pid = alice.authorize().json()["id"]
    alice.capture(pid)
    assert_problem(alice.refund(pid, body), 400)


def test_a_body_sent_to_void_is_ignored(alice: Caller) -> None:
    pid = alice.authorize().json()["id"]
    response = alice.client.post(f"/v1/payments/{pid}/void", json={"x": 1},
                                 headers=alice.headers(new_key()))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "voided"


@pytest.mark.parametrize("params", [{"page": 0}, {"page_size": 101}, {"status": "paid"},
                                    {"order_id": "has space"}, {"page": "first"}])
def test_bad_list_queries(alice: Caller, params: dict[str, Any]) -> None:
    assert_problem(alice.list(**params), 400)


def test_malformed_json_is_400(alice: Caller) -> None:
    response = alice.client.post(
        "/v1/payments", content=b'{"order_id": ',
        headers={**alice.headers(new_key()), "Content-Type": "application/json"})
    assert_problem(response, 400)
