"""Every payments operation over HTTP: authorise, capture, void, refund, get, list."""

from __future__ import annotations

from typing import Any

import pytest
from payments_support import (
    DECLINED_CARD,
    ERROR_CARD,
    NO_FUNDS_CARD,
    Caller,
    new_key,
)

from services.payments.clients import SimulatedProvider
from tests.support.plugin import assert_problem


def authorised(caller: Caller, **changes: Any) -> dict[str, Any]:
    response = caller.authorize(**changes)
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_authorise_with_a_card(alice: Caller, provider: SimulatedProvider) -> None:
    response = alice.authorize(description="Order ord-1")
    assert response.status_code == 201, response.text
    doc = response.json()
    assert response.headers["location"] == f"/v1/payments/{doc['id']}"
    assert "idempotent-replayed" not in response.headers
    assert doc["id"].startswith("pay_")
    assert {k: doc[k] for k in ("order_id", "customer_id", "amount", "currency", "status",
                                "captured_amount", "refunded_amount", "refundable_amount",
                                "description", "decline_code", "provider")} == {
        "order_id": "ord-1", "customer_id": "alice", "amount": 4980, "currency": "EUR",
        "status": "authorized", "captured_amount": 0, "refunded_amount": 0,
        "refundable_amount": 0, "description": "Order ord-1", "decline_code": None,
        "provider": "simulated"}
    assert doc["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242",
                                     "token": None}
    assert doc["provider_reference"].startswith("sim_auth_")
    assert "4242424242424242" not in response.text
    assert provider.charges == 1


def test_authorise_with_a_token(alice: Caller) -> None:
    doc = authorised(alice, card_number=None, method="tok_mastercard")
    assert doc["payment_method"] == {"type": "token", "brand": None, "last4": None,
                                     "token": "tok_mastercard"}


@pytest.mark.parametrize(("changes", "code"), [
    ({"card_number": DECLINED_CARD}, "card_declined"),
    ({"card_number": NO_FUNDS_CARD}, "insufficient_funds"),
    ({"card_number": None, "method": "tok_card_declined"}, "card_declined"),
    ({"amount": 1_000_001}, "limit_exceeded"),
])
def test_declines_are_402_and_stored(alice: Caller, provider: SimulatedProvider,
                                     changes: dict[str, Any], code: str) -> None:
    response = alice.authorize(**changes)
    problem = assert_problem(response, 402)
    assert problem["type"].endswith("/problems/payment-declined")
    assert problem["decline_code"] == code
    payment = problem["payment"]
    assert payment["id"] == problem["payment_id"]
    assert (payment["status"], payment["decline_code"]) == ("declined", code)
    assert response.headers["location"] == f"/v1/payments/{payment['id']}"
    stored = alice.get(payment["id"]).json()
    assert stored == payment
    assert_problem(alice.capture(payment["id"]), 409)
    assert provider.charges == 0


def test_amount_at_the_threshold_is_authorised(alice: Caller) -> None:
    assert authorised(alice, amount=1_000_000)["status"] == "authorized"


def test_provider_error_is_502_retriable_and_stores_nothing(alice: Caller,
                                                            provider: SimulatedProvider) -> None:
    response = alice.authorize(card_number=ERROR_CARD)
    problem = assert_problem(response, 502)
    assert response.headers["retry-after"] == "1"
    assert problem["retriable"] is True
    assert alice.list().json()["total"] == 0


def test_provider_outage_then_retry_with_the_same_key(alice: Caller,
                                                      provider: SimulatedProvider) -> None:
    provider.fail_next(1)
    key = new_key()
    assert_problem(alice.authorize(key=key), 502)
    again = alice.authorize(key=key)
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert provider.charges == 1 and alice.list().json()["total"] == 1


def test_full_capture(alice: Caller, provider: SimulatedProvider) -> None:
    payment = authorised(alice)
    response = alice.capture(payment["id"])  # no body: capture everything
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["status"], doc["captured_amount"], doc["refundable_amount"]) == (
        "captured", 4980, 4980)
    assert doc["capture_reference"].startswith("sim_cap_")
    assert provider.calls_of("capture")[0].amount == 4980


def test_partial_capture_and_empty_json_body(alice: Caller) -> None:
    payment = authorised(alice)
    doc = alice.capture(payment["id"], {"amount": 3000}).json()
    assert (doc["status"], doc["captured_amount"]) == ("captured", 3000)
    other = authorised(alice)
    assert alice.capture(other["id"], {}).json()["captured_amount"] == 4980


def test_capture_above_the_authorised_amount_is_422(alice: Caller) -> None:
    payment = authorised(alice)
    assert_problem(alice.capture(payment["id"], {"amount": 4981}), 422)
    assert alice.get(payment["id"]).json()["status"] == "authorized"


def test_capture_twice_is_409(alice: Caller) -> None:
    payment = authorised(alice)
    assert alice.capture(payment["id"], {"amount": 100}).status_code == 200
    problem = assert_problem(alice.capture(payment["id"]), 409)
    assert problem["title"] == "Invalid payment state"


def test_void_before_capture(alice: Caller, provider: SimulatedProvider) -> None:
    payment = authorised(alice)
    response = alice.void(payment["id"])
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "voided" and doc["void_reference"].startswith("sim_void_")
    assert_problem(alice.capture(payment["id"]), 409)
    assert_problem(alice.void(payment["id"]), 409)
    assert_problem(alice.refund(payment["id"]), 409)
    assert len(provider.calls_of("void")) == 1


def test_void_after_capture_is_409(alice: Caller) -> None:
    payment = authorised(alice)
    alice.capture(payment["id"])
    assert_problem(alice.void(payment["id"]), 409)


def test_refund_before_capture_is_409(alice: Caller) -> None:
    payment = authorised(alice)
    assert_problem(alice.refund(payment["id"], {"amount": 10}), 409)


def test_multiple_partial_refunds(alice: Caller, provider: SimulatedProvider) -> None:
    payment = authorised(alice)
    alice.capture(payment["id"], {"amount": 4000})
    first = alice.refund(payment["id"], {"amount": 1000, "reason": "one item missing"})
    assert first.status_code == 201, first.text
    doc = first.json()
    assert doc["id"].startswith("ref_") and doc["payment_id"] == payment["id"]
    assert (doc["amount"], doc["currency"], doc["reason"]) == (1000, "EUR", "one item missing")
    assert doc["provider_reference"].startswith("sim_ref_")
    assert (doc["payment"]["status"], doc["payment"]["refunded_amount"],
            doc["payment"]["refundable_amount"]) == ("partially_refunded", 1000, 3000)
    assert_problem(alice.refund(payment["id"], {"amount": 3001}), 422)
    second = alice.refund(payment["id"], {"amount": 500}).json()
    assert second["payment"]["refundable_amount"] == 2500
    rest = alice.refund(payment["id"]).json()  # no body: everything left
    assert rest["amount"] == 2500
    assert (rest["payment"]["status"], rest["payment"]["refunded_amount"]) == ("refunded", 4000)
    assert_problem(alice.refund(payment["id"], {"amount": 1}), 409)
    stored = alice.get(payment["id"]).json()
    assert [r["amount"] for r in stored["refunds"]] == [1000, 500, 2500]
    assert "payment" not in stored["refunds"][0]
    assert len(provider.calls_of("refund")) == 3


def test_provider_failure_on_capture_changes_nothing(alice: Caller,
                                                     provider: SimulatedProvider) -> None:
    payment = authorised(alice)
    provider.fail_next(1)
    assert_problem(alice.capture(payment["id"]), 502)
    assert alice.get(payment["id"]).json()["status"] == "authorized"
    assert alice.capture(payment["id"]).json()["status"] == "captured"


def test_get_unknown_payment_is_404(alice: Caller) -> None:
    assert_problem(alice.get("pay_" + "0" * 32), 404)
    for response in (alice.capture("pay_" + "0" * 32), alice.void("pay_" + "0" * 32),
                     alice.refund("pay_" + "0" * 32)):
        assert_problem(response, 404)


def test_list_filters_and_pages(alice: Caller) -> None:
    a = authorised(alice, order_id="ord-a")
    authorised(alice, order_id="ord-b")
    declined = alice.authorize(order_id="ord-b", card_number=DECLINED_CARD)
    assert declined.status_code == 402
    everything = alice.list().json()
    assert (everything["total"], everything["page"], everything["page_size"]) == (3, 1, 20)
    assert everything["items"][-1]["id"] == a["id"]  # newest first
    assert alice.list(order_id="ord-b").json()["total"] == 2
    assert alice.list(order_id="ord-b", status="declined").json()["total"] == 1
    page = alice.list(page=2, page_size=2).json()
    assert (len(page["items"]), page["total"]) == (1, 3)
    assert alice.list(order_id="nothing").json() == {"items": [], "page": 1, "page_size": 20,
                                                     "total": 0}
