"""Orders v2 (checkout that places and pays, refunding cancel, cursor pages, audit trail)
served beside v1 by the same app, against in-memory fakes of the other services."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import Auth, keyed, new_key, participants_reply

from charter.db import Database
from charter.testing import TokenFactory
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings
from services.orders.app import create_app, order_service
from services.orders.messaging import OrderReplies
from services.orders.ports import (
    CheckoutPaymentsPort,
    PaymentOutcome,
    PaymentsUnavailable,
)
from services.orders.ports import Payment as PaymentView
from tests.support.plugin import assert_problem
from tests.support.servers import ThreadServer

TOKEN = {"type": "token", "token": "tok_visa"}
ITEMS = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}],
         "payment_method": TOKEN}
TOTAL = 2 * 2490 + 12900


class FakeCheckoutPayments(CheckoutPaymentsPort):
    """Payments keyed like the real service: a key acts once; ``tok_chargeDeclined`` is
    declined; ``down`` makes every call unavailable."""

    def __init__(self) -> None:
        self.payments: dict[str, PaymentView] = {}
        self.keys: dict[str, PaymentOutcome] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = False

    def _keyed(self, key: str, action: str, make: Callable[[], PaymentOutcome]) -> PaymentOutcome:
        if self.down:
            raise PaymentsUnavailable("payments down (test)")
        if key not in self.keys:
            self.calls.append((action, key))
            self.keys[key] = make()
        return self.keys[key]

    def _move(self, payment_id: str, allowed: str, target: str) -> PaymentOutcome:
        payment = self.payments[payment_id]
        if payment.status != allowed:
            return PaymentOutcome(payment, f"payment is {payment.status}")
        moved = PaymentView(**{**payment.__dict__, "status": target})
        self.payments[payment_id] = moved
        return PaymentOutcome(moved)

    def authorize(self, order_id: str, customer_id: str, amount: int, currency: str,
                  method: str, key: str) -> PaymentOutcome:
        def make() -> PaymentOutcome:
            status = "declined" if method == "tok_chargeDeclined" else "authorized"
            payment = PaymentView("pay_" + uuid.uuid4().hex, order_id, customer_id, amount,
                                  currency, status)
            self.payments[payment.id] = payment
            return PaymentOutcome(payment, "card_declined" if status == "declined" else None)
        return self._keyed(key, "authorize", make)

    def capture(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._keyed(key, "capture", lambda: self._move(payment_id, "authorized",
                                                               "captured"))

    def void(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._keyed(key, "void", lambda: self._move(payment_id, "authorized", "voided"))

    def refund(self, payment_id: str, key: str, reason: str) -> PaymentOutcome:
        return self._keyed(key, "refund", lambda: self._move(payment_id, "captured",
                                                              "refunded"))

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
def checkout_payments() -> FakeCheckoutPayments:
    return FakeCheckoutPayments()


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments,
        checkout_payments: FakeCheckoutPayments) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                      payments=payments,
                      checkout_payments=checkout_payments)


def checkout(client: Any, headers: dict[str, str], body: dict[str, Any] | None = None,
             key: str | None = None) -> Any:
    return client.post("/v2/orders", json=body or ITEMS, headers=keyed(headers, key))


def events(client: Any, headers: dict[str, str], order_id: str) -> list[str]:
    r = client.get(f"/v2/orders/{order_id}/events?limit=100", headers=headers)
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["items"]]


def test_checkout_places_pays_confirms_and_captures(
        client: Any, auth: Auth, catalog: InMemoryCatalog, db: Database,
        checkout_payments: FakeCheckoutPayments) -> None:
    r = checkout(client, auth("alice"))
    assert r.status_code == 202, r.text
    order = r.json()
    assert r.headers["Location"] == f"/v2/orders/{order['id']}"
    assert (order["status"], order["progress"], order["reason"]) == ("confirmed", "confirmed",
                                                                      None)
    assert order["total"] == {"amount_minor": TOTAL, "currency": "EUR"}
    assert order["items"][0]["unit_price"] == {"amount_minor": 2490, "currency": "EUR"}
    assert order["payment"]["status"] == "captured"
    assert [a for a, _ in checkout_payments.calls] == ["authorize", "capture"]
    assert catalog.available(1) == 8  # committed
    assert events(client, auth("alice"), order["id"]) == [
        "order.placed", "checkout.requested", "stock.reserved", "payment.requested",
        "payment.authorized", "order.confirming", "stock.committed", "payment.captured",
        "order.confirmed"]
    published = participants_reply(db)  # loyalty and notifications answer the event
    assert [e.routing_key for e in published] == ["orders.OrderConfirmed"]
    assert published[0].saga_id == order["id"]
    assert events(client, auth("alice"), order["id"])[-2:] == ["loyalty.done",
                                                               "notification.done"]
    # v1 sees the same order (its own contract, unchanged).
    v1 = client.get(f"/v1/orders/{order['id']}", headers=auth("alice")).json()
    assert (v1["status"], v1["total"], v1["payment_id"]) == ("confirmed", TOTAL,
                                                             order["payment"]["id"])


def test_declined_payment_cancels_and_releases_the_stock(
        client: Any, auth: Auth, catalog: InMemoryCatalog) -> None:
    body = {**ITEMS, "payment_method": {"type": "token", "token": "tok_chargeDeclined"}}
    order = checkout(client, auth("alice"), body).json()
    assert order["status"] == "cancelled"
    assert order["reason"]["code"] == "payment_declined"
    assert "card_declined" in order["reason"]["detail"]
    assert catalog.available(1) == 10  # released
    assert events(client, auth("alice"), order["id"])[-3:] == [
        "payment.declined", "order.cancelled", "release.done"]


def test_short_stock_is_a_cancelled_order_not_a_problem(client: Any, auth: Auth) -> None:
    r = checkout(client, auth("alice"), {"items": [{"product_id": 3, "quantity": 1}],
                                         "payment_method": TOKEN})
    assert r.status_code == 202
    assert (r.json()["status"], r.json()["reason"]["code"]) == ("cancelled",
                                                                "insufficient_stock")


def test_payments_down_leaves_it_pending_and_the_same_key_resumes(
        client: Any, auth: Auth, checkout_payments: FakeCheckoutPayments) -> None:
    key = new_key()
    checkout_payments.down = True
    first = checkout(client, auth("alice"), key=key).json()
    assert (first["status"], first["progress"]) == ("pending", "stock_reserved")
    checkout_payments.down = False
    again = checkout(client, auth("alice"), key=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "confirmed"
    assert [a for a, _ in checkout_payments.calls] == ["authorize", "capture"]


def test_same_key_other_payment_method_is_refused(client: Any, auth: Auth) -> None:
    key = new_key()
    assert checkout(client, auth("alice"), key=key).status_code == 202
    other = {**ITEMS, "payment_method": {"type": "token", "token": "tok_mastercard"}}
    assert_problem(checkout(client, auth("alice"), other, key=key), 422)


def test_cancel_of_a_confirmed_order_refunds_it_and_returns_the_stock(
        client: Any, auth: Auth, db: Database, catalog: InMemoryCatalog,
        checkout_payments: FakeCheckoutPayments) -> None:
    before = catalog.on_hand[1]
    order = checkout(client, auth("alice")).json()
    assert catalog.on_hand[1] == before - 2
    participants_reply(db)
    r = client.post(f"/v2/orders/{order['id']}/cancel", headers=keyed(auth("alice")))
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["reason"]["code"] == "cancelled_by_customer"
    assert cancelled["payment"]["status"] == "refunded"
    assert checkout_payments.payments[order["payment"]["id"]].status == "refunded"
    assert events(client, auth("alice"), order["id"])[-3:] == ["payment.refunded",
                                                               "order.cancelled",
                                                               "stock.return_done"]
    assert catalog.on_hand[1] == before  # the goods came back: a keyed stock movement
    # Cancelling again changes nothing and refunds and returns nothing more.
    again = client.post(f"/v2/orders/{order['id']}/cancel", headers=keyed(auth("alice")))
    assert again.status_code == 200
    assert [a for a, _ in checkout_payments.calls].count("refund") == 1
    assert catalog.effects[("return", f"order-{order['id']}-return")] == 1
    assert catalog.on_hand[1] == before


def test_a_refund_asks_loyalty_for_the_points_back_by_event(
        client: Any, auth: Auth, db: Database, app: Any) -> None:
    """The refund stands whatever loyalty does: ``OrderCancelled`` (after confirmation)
    goes out with it; loyalty's reply closes the reversal, however late it comes."""
    order = checkout(client, auth("alice")).json()
    participants_reply(db)
    r = client.post(f"/v2/orders/{order['id']}/cancel", headers=keyed(auth("alice")))
    assert (r.json()["status"], r.json()["payment"]["status"]) == ("cancelled", "refunded")
    assert order_service(app).resume_pending().get("reversal:done") is None  # not orders' job
    published = participants_reply(db, loyalty=False)  # loyalty down: no reply yet
    assert [(e.type, e.data["after_confirmation"], e.data["code"]) for e in published] == [
        ("OrderCancelled", True, "cancelled_by_customer")]
    assert events(client, auth("alice"), order["id"])[-2:] == ["order.cancelled",
                                                               "stock.return_done"]
    OrderReplies(db)(published[0].caused("AwardReversed", {
        "order_id": order["id"], "customer_id": "alice", "points": 10}, source="loyalty"))
    assert events(client, auth("alice"), order["id"])[-1] == "loyalty.reversed"


def test_an_award_never_made_is_nothing_to_reverse(
        client: Any, auth: Auth, db: Database) -> None:
    """Refunded before loyalty awarded anything: loyalty answers 0 points back."""
    order = checkout(client, auth("alice")).json()
    client.post(f"/v2/orders/{order['id']}/cancel", headers=keyed(auth("alice")))
    cancelled = next(e for e in participants_reply(db, loyalty=False)
                     if e.type == "OrderCancelled")
    OrderReplies(db)(cancelled.caused("AwardReversed", {
        "order_id": order["id"], "customer_id": "alice", "points": 0}, source="loyalty"))
    assert events(client, auth("alice"), order["id"])[-1] == "loyalty.not_awarded"


def test_cancel_with_payments_down_is_503_and_changes_nothing(
        client: Any, auth: Auth, checkout_payments: FakeCheckoutPayments) -> None:
    order = checkout(client, auth("alice")).json()
    checkout_payments.down = True
    r = client.post(f"/v2/orders/{order['id']}/cancel", headers=keyed(auth("alice")))
    assert_problem(r, 503)
    assert client.get(f"/v2/orders/{order['id']}", headers=auth("alice")).json()["status"] \
        == "confirmed"


def test_cursor_pages_walk_every_order_once(client: Any, auth: Auth) -> None:
    one = {"items": [{"product_id": 1, "quantity": 1}], "payment_method": TOKEN}
    ids = {checkout(client, auth("alice"), one).json()["id"] for _ in range(5)}
    seen: list[str] = []
    url = "/v2/orders?limit=2"
    while True:
        page = client.get(url, headers=auth("alice")).json()
        seen += [o["id"] for o in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/v2/orders?limit=2&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    confirmed = client.get("/v2/orders?status=confirmed", headers=auth("alice")).json()
    assert len(confirmed["items"]) == 5


def test_a_cursor_of_another_filter_or_garbage_is_422(client: Any, auth: Auth) -> None:
    """Well-formed (the spec's pattern) but not processable: 422 (found by Schemathesis)."""
    for _ in range(2):
        checkout(client, auth("alice"))
    cursor = client.get("/v2/orders?limit=1", headers=auth("alice")).json()["next_cursor"]
    assert_problem(client.get(f"/v2/orders?status=cancelled&cursor={cursor}",
                              headers=auth("alice")), 422)
    assert_problem(client.get("/v2/orders?cursor=bm90LWpzb24", headers=auth("alice")), 422)


def test_customers_see_only_their_own_orders_and_trails(client: Any, auth: Auth) -> None:
    order = checkout(client, auth("alice")).json()
    assert_problem(client.get(f"/v2/orders/{order['id']}", headers=auth("bob")), 404)
    assert_problem(client.get(f"/v2/orders/{order['id']}/events", headers=auth("bob")), 404)
    assert_problem(client.post(f"/v2/orders/{order['id']}/cancel",
                               headers=keyed(auth("bob"))), 404)
    assert client.get("/v2/orders", headers=auth("bob")).json()["items"] == []
    assert_problem(client.get("/v2/orders?customer_id=alice", headers=auth("bob")), 403)


def test_staff_cancel_is_recorded_as_such(client: Any, auth: Auth) -> None:
    order = checkout(client, auth("alice")).json()
    r = client.post(f"/v2/orders/{order['id']}/cancel",
                    headers=keyed(auth("sam", role="staff")))
    assert r.json()["reason"]["code"] == "cancelled_by_staff"


def test_events_page_with_after(client: Any, auth: Auth) -> None:
    order = checkout(client, auth("alice")).json()
    first = client.get(f"/v2/orders/{order['id']}/events?limit=3", headers=auth("alice")).json()
    assert [e["sequence"] for e in first["items"]] == [1, 2, 3]
    assert first["next_after"] == 3
    rest = client.get(f"/v2/orders/{order['id']}/events?after=3&limit=100",
                      headers=auth("alice")).json()
    assert rest["items"][0]["sequence"] == 4 and rest["next_after"] is None


def test_v2_needs_a_payment_method(client: Any, auth: Auth) -> None:
    assert_problem(checkout(client, auth("alice"), {"items": ITEMS["items"]}), 400)


def test_checkout_through_the_gateway(app: Any, tokens: TokenFactory, auth: Auth,
                                      asgi_server: Callable[..., ThreadServer]) -> None:
    """v2 as users call it: through a real gateway in front of the real orders service."""
    orders = asgi_server(app)
    gateway = asgi_server(create_gateway(
        upstreams={"orders": orders.url}, verifier=tokens.verifier(),
        settings=GatewaySettings(rate_limit=0), access_log=False))
    with httpx.Client(base_url=gateway.url) as http:
        r = http.post("/orders/v2/orders", json=ITEMS, headers=keyed(auth("alice")))
        assert r.status_code == 202, r.text
        order_id = r.json()["id"]
        trail = http.get(f"/orders/v2/orders/{order_id}/events", headers=auth("alice"))
        ui = http.get("/orders/v2/ui/")
    assert r.json()["status"] == "confirmed"
    assert trail.json()["items"][0]["type"] == "order.placed"
    assert ui.status_code == 200


def test_a_capture_that_failed_is_done_by_recovery(
        client: Any, auth: Auth, app: Any, checkout_payments: FakeCheckoutPayments) -> None:
    """The capture comes before the confirmation: payments down at that step leaves the
    order pending with its stock committed; recovery captures, then confirms."""
    real_capture = checkout_payments.capture

    def capture_down(payment_id: str, key: str) -> PaymentOutcome:
        raise PaymentsUnavailable("capture down (test)")

    checkout_payments.capture = capture_down  # type: ignore[method-assign]
    order = checkout(client, auth("alice")).json()
    assert (order["status"], order["progress"], order["payment"]["status"]) == (
        "pending", "payment_authorized", "authorized")
    checkout_payments.capture = real_capture  # type: ignore[method-assign]
    report = order_service(app).resume_pending()
    assert report.get("saga:confirmed") == 1
    again = client.get(f"/v2/orders/{order['id']}", headers=auth("alice")).json()
    assert (again["status"], again["payment"]["status"]) == ("confirmed", "captured")
    assert order_service(app).resume_pending().get("saga:confirmed") is None
