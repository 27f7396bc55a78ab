"""Ownership: customers see and act on their own payments only; staff and services on all."""

from __future__ import annotations

from typing import Any

from payments_support import Caller

from charter.testing import TokenFactory
from tests.support.plugin import assert_problem


def authorised(caller: Caller, **changes: Any) -> dict[str, Any]:
    response = caller.authorize(**changes)
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_a_customer_cannot_see_or_touch_another_customers_payment(alice: Caller,
                                                                   bob: Caller) -> None:
    payment = authorised(alice)
    pid = payment["id"]
    assert_problem(bob.get(pid), 404)
    assert_problem(bob.capture(pid), 404)
    assert_problem(bob.void(pid), 404)
    alice.capture(pid)
    assert_problem(bob.refund(pid, {"amount": 1}), 404)
    assert alice.get(pid).json()["refunded_amount"] == 0


def test_lists_show_only_the_callers_payments(alice: Caller, bob: Caller) -> None:
    authorised(alice, order_id="ord-a")
    authorised(bob, order_id="ord-b")
    assert [p["customer_id"] for p in alice.list().json()["items"]] == ["alice"]
    assert bob.list(order_id="ord-a").json()["total"] == 0


def test_a_customer_may_not_name_another_customer(alice: Caller) -> None:
    assert_problem(alice.list(customer_id="bob"), 403)
    assert alice.list(customer_id="alice").status_code == 200
    assert_problem(alice.authorize(customer_id="bob"), 403)
    assert authorised(alice, customer_id="alice")["customer_id"] == "alice"


def test_the_orders_service_pays_for_a_customer(alice: Caller, orders: Caller) -> None:
    payment = authorised(orders, customer_id="alice", order_id="ord-42")
    assert payment["customer_id"] == "alice"
    # the customer sees it as theirs; the service may capture and refund it
    assert alice.get(payment["id"]).status_code == 200
    assert orders.capture(payment["id"]).json()["status"] == "captured"
    assert orders.refund(payment["id"], {"amount": 10}).status_code == 201
    assert alice.list().json()["total"] == 1


def test_a_customer_cannot_act_on_a_payment_made_on_their_behalf(alice: Caller,
                                                                  orders: Caller,
                                                                  staff: Caller) -> None:
    held = authorised(orders, customer_id="alice", order_id="ord-43")
    problem = assert_problem(alice.void(held["id"]), 403)
    assert "ord-43" in problem["detail"]
    assert_problem(alice.capture(held["id"]), 403)
    orders.capture(held["id"])
    assert_problem(alice.refund(held["id"]), 403)  # no self-refund of a shipped order
    assert alice.get(held["id"]).json()["refunded_amount"] == 0
    assert staff.refund(held["id"], {"amount": 100}).status_code == 201


def test_staff_and_services_see_everything(alice: Caller, bob: Caller, staff: Caller,
                                           orders: Caller) -> None:
    a = authorised(alice)
    authorised(bob)
    for privileged in (staff, orders):
        assert privileged.list().json()["total"] == 2
        assert privileged.list(customer_id="bob").json()["total"] == 1
        assert privileged.get(a["id"]).status_code == 200
    assert staff.void(a["id"]).json()["status"] == "voided"


def test_a_client_without_role_acts_as_itself(client: Any, tokens: TokenFactory,
                                              alice: Caller) -> None:
    demo = Caller(client, tokens, "demo-cli", None)
    authorised(alice)
    own = authorised(demo)
    assert own["customer_id"] == "demo-cli"
    assert demo.list().json()["total"] == 1
    assert_problem(demo.authorize(customer_id="alice"), 403)
