"""Every operation of the orders API against in-memory fakes of the other services."""

from __future__ import annotations

from typing import Any

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import (
    Auth,
    cancel,
    confirm,
    keyed,
    new_key,
    participants_reply,
    payment_for,
    payment_id,
    place,
    place_pending,
)

from charter.db import Database
from charter.messaging.consumer import PoisonMessage
from charter.messaging.envelope import Envelope
from services.orders.domain import OrderEvent
from services.orders.messaging import OrderReplies
from services.orders.ports import CartLine, Payment
from services.orders.store import SqlOrderRepository
from tests.support.plugin import assert_problem

ITEMS = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]}


def placed(client: Any, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict:
    r = place(client, headers, body or ITEMS)
    assert r.status_code == 201, r.text
    return dict(r.json())


def paid(client: Any, headers: dict[str, str],
         payments: InMemoryPayments) -> tuple[dict[str, Any], Payment]:
    """A reserved order and an authorized payment that fits it."""
    order = placed(client, headers)
    return order, payments.put(payment_for(order))


# -- place_order ------------------------------------------------------------------------
def test_place_from_items_reserves_and_answers_201(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    r = place(client, auth(), ITEMS)
    assert r.status_code == 201, r.text
    order = r.json()
    assert r.headers["Location"] == f"/v1/orders/{order['id']}"
    assert "Idempotent-Replayed" not in r.headers
    assert order["status"] == "reserved"
    assert order["customer_id"] == "alice"
    assert order["source"] == "items"
    assert order["currency"] == "EUR"
    assert order["items"] == [
        {"product_id": 1, "sku": "COF-0001", "name": "Espresso Blend 1 kg", "unit_price": 2490,
         "quantity": 2, "line_total": 4980},
        {"product_id": 2, "sku": "BRW-0005", "name": "Burr Grinder", "unit_price": 12900,
         "quantity": 1, "line_total": 12900},
    ]
    assert order["total"] == 4980 + 12900 and order["item_count"] == 3
    for name in ("reason", "shortages", "payment_id", "loyalty_status", "notification_status",
                 "release_status"):
        assert order[name] is None, name
    assert order["created_at"].endswith("Z") and order["updated_at"].endswith("Z")
    assert catalog.reserved == {1: 2, 2: 1, 3: 0, 4: 0, 5: 0}
    assert catalog.reservations[order["id"]].items == [(1, 2), (2, 1)]
    assert catalog.effects[("reserve", f"order-{order['id']}-reserve")] == 1


def test_duplicate_items_are_merged(client: Any, auth: Auth, catalog: InMemoryCatalog) -> None:
    body = {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]}
    order = placed(client, auth(), body)
    assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [(1, 3)]
    assert catalog.reserved[1] == 3


def test_place_from_cart_forwards_the_callers_token_and_empties_the_cart(
    client: Any, auth: Auth, cart: InMemoryCart, catalog: InMemoryCatalog
) -> None:
    headers = auth()
    r = place(client, headers, {"source": "cart"})
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["source"] == "cart"
    assert [(i["product_id"], i["quantity"], i["unit_price"]) for i in order["items"]] == [
        (1, 2, 2490), (2, 1, 12900)]
    assert cart.seen == [("get", headers["Authorization"], "alice"),
                         ("clear", headers["Authorization"], "alice")]
    assert "alice" not in cart.carts
    assert catalog.reserved[1] == 2 and catalog.reserved[2] == 1


def test_cart_is_kept_when_the_order_is_rejected(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    cart.put("alice", [CartLine(3, "BRW-0002", "Paper Filters (100)", 590, "EUR", 1)])
    r = place(client, auth(), {"source": "cart"})
    assert_problem(r, 409)
    assert [op for op, *_ in cart.seen] == ["get"]
    assert "alice" in cart.carts


def test_emptying_the_cart_is_best_effort(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    cart.clear_down = True
    r = place(client, auth(), {"source": "cart"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "reserved"
    assert "alice" in cart.carts


def test_empty_cart_is_422_and_creates_nothing(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    body = assert_problem(place(client, auth("bob"), {"source": "cart"}), 422)
    assert body["title"] == "Empty cart"
    assert client.get("/v1/orders", headers=auth("bob")).json()["total"] == 0
    assert not catalog.calls


def test_cart_with_an_unsellable_product_is_422(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    cart.put("alice", [CartLine(4, "SKU-4", "Old mug", 800, "EUR", 1, "unavailable")])
    body = assert_problem(place(client, auth(), {"source": "cart"}), 422)
    assert body["product_id"] == 4


def test_cart_with_stale_prices_or_down_is_503_and_creates_nothing(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    cart.put("alice", cart.carts["alice"].items, pricing="stale")
    assert_problem(place(client, auth(), {"source": "cart"}), 503)
    cart.down = True
    assert_problem(place(client, auth(), {"source": "cart"}), 503)
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 0


def test_cart_refusing_the_callers_token_is_403(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    cart.forbidden.add("alice")
    body = assert_problem(place(client, auth(), {"source": "cart"}), 403)
    assert "cart" in body["detail"]


@pytest.mark.parametrize("product_id, title", [(99, "Unknown product"),
                                               (4, "Product not for sale")])
def test_unknown_or_inactive_products_are_422(
    client: Any, auth: Auth, product_id: int, title: str
) -> None:
    r = place(client, auth(), {"items": [{"product_id": product_id, "quantity": 1}]})
    body = assert_problem(r, 422)
    assert body["title"] == title and body["product_id"] == product_id
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 0


def test_currency_mismatch_is_422(client: Any, auth: Auth) -> None:
    r = place(client, auth(), {"items": [{"product_id": 5, "quantity": 1}]})
    assert "priced in USD" in assert_problem(r, 422)["detail"]
    r = place(client, auth(), {"items": [{"product_id": 5, "quantity": 1}], "currency": "USD"})
    assert r.status_code == 201, r.text
    assert r.json()["currency"] == "USD" and r.json()["total"] == 500


def test_pricing_with_the_catalog_down_is_503_and_creates_nothing(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    catalog.down = True
    body = assert_problem(place(client, auth(), ITEMS), 503)
    assert body["title"] == "Service Unavailable"
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 0


def test_shortage_is_409_with_the_short_products_and_a_rejected_order(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    body = {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 3}]}
    r = place(client, auth(), body)
    problem = assert_problem(r, 409)
    assert problem["title"] == "Insufficient stock"
    assert problem["shortages"] == [{"product_id": 2, "requested": 3, "available": 2}]
    assert problem["order_status"] == "rejected"
    assert r.headers["Location"] == f"/v1/orders/{problem['order_id']}"
    order = client.get(r.headers["Location"], headers=auth()).json()
    assert order["status"] == "rejected"
    assert order["reason"] and order["shortages"] == problem["shortages"]
    assert sum(catalog.reserved.values()) == 0 and not catalog.reservations


# -- get_order --------------------------------------------------------------------------
def test_get_own_order(client: Any, auth: Auth) -> None:
    order = placed(client, auth())
    r = client.get(f"/v1/orders/{order['id']}", headers=auth())
    assert r.status_code == 200 and r.json() == order


def test_staff_and_services_read_any_order(client: Any, auth: Auth) -> None:
    order = placed(client, auth())
    for role in ("staff", "admin", "service"):
        r = client.get(f"/v1/orders/{order['id']}", headers=auth("x", role=role))
        assert r.status_code == 200 and r.json()["id"] == order["id"], role


def test_unknown_order_is_404(client: Any, auth: Auth) -> None:
    assert_problem(client.get("/v1/orders/00000000-0000-4000-8000-000000000000",
                              headers=auth()), 404)


# -- list_orders ------------------------------------------------------------------------
def test_list_own_orders_newest_first_paginated_and_filtered(
    client: Any, auth: Auth
) -> None:
    ids = [placed(client, auth(), {"items": [{"product_id": 1, "quantity": 1}]})["id"]
           for _ in range(3)]
    placed(client, auth("bob"), {"items": [{"product_id": 1, "quantity": 1}]})
    assert_problem(place(client, auth(), {"items": [{"product_id": 3, "quantity": 1}]}), 409)
    r = client.get("/v1/orders?page_size=2", headers=auth())
    assert r.status_code == 200
    page = r.json()
    assert (page["page"], page["page_size"], page["total"]) == (1, 2, 4)
    assert all(o["customer_id"] == "alice" for o in page["items"])
    second = client.get("/v1/orders?page=2&page_size=2", headers=auth()).json()
    listed = [o["id"] for o in page["items"] + second["items"] if o["status"] == "reserved"]
    assert listed == list(reversed(ids))
    rejected = client.get("/v1/orders?status=rejected", headers=auth()).json()
    assert rejected["total"] == 1 and rejected["items"][0]["status"] == "rejected"
    mine = client.get("/v1/orders?customer_id=alice", headers=auth()).json()
    assert mine["total"] == 4


def test_customers_cannot_list_someone_elses_orders(client: Any, auth: Auth) -> None:
    assert_problem(client.get("/v1/orders?customer_id=bob", headers=auth()), 403)


def test_staff_list_everyone_and_filter_by_customer(client: Any, auth: Auth) -> None:
    placed(client, auth())
    placed(client, auth("bob"))
    staff = auth("carol", role="staff")
    assert client.get("/v1/orders", headers=staff).json()["total"] == 2
    bobs = client.get("/v1/orders?customer_id=bob", headers=staff).json()
    assert bobs["total"] == 1 and bobs["items"][0]["customer_id"] == "bob"


# -- cancel_order -----------------------------------------------------------------------
def test_cancel_releases_the_stock(client: Any, auth: Auth, catalog: InMemoryCatalog) -> None:
    order = placed(client, auth())
    r = cancel(client, auth(), order["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["release_status"] == "done"
    assert catalog.reservations[order["id"]].status == "released"
    assert sum(catalog.reserved.values()) == 0
    assert catalog.effects[("release", f"order-{order['id']}-release")] == 1


def test_cancelling_a_cancelled_order_is_a_no_op(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    order = placed(client, auth())
    first = cancel(client, auth(), order["id"]).json()
    again = cancel(client, auth(), order["id"])
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert again.json()["updated_at"] == first["updated_at"]
    assert catalog.effects[("release", f"order-{order['id']}-release")] == 1


def test_cancel_replays_for_the_same_key(client: Any, auth: Auth) -> None:
    order = placed(client, auth())
    key = new_key()
    assert "Idempotent-Replayed" not in cancel(client, auth(), order["id"], key).headers
    again = cancel(client, auth(), order["id"], key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    other = placed(client, auth())
    assert_problem(cancel(client, auth(), other["id"], key), 422)  # same key, other order


def test_staff_may_cancel_any_order(client: Any, auth: Auth) -> None:
    order = placed(client, auth())
    r = cancel(client, auth("carol", role="staff"), order["id"])
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_cancel_a_rejected_order_is_409(client: Any, auth: Auth) -> None:
    r = place(client, auth(), {"items": [{"product_id": 3, "quantity": 1}]})
    order_id = assert_problem(r, 409)["order_id"]
    assert_problem(cancel(client, auth(), order_id), 409)


def test_cancel_a_confirmed_order_is_409(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog
) -> None:
    order, pay = paid(client, auth(), payments)
    assert confirm(client, auth(), order["id"], pay.id).status_code == 200
    body = assert_problem(cancel(client, auth(), order["id"]), 409)
    assert "confirmed" in body["detail"]
    assert catalog.reservations[order["id"]].status == "committed"


# -- confirm_order ----------------------------------------------------------------------
def test_confirm_happy_path_commits_captures_and_publishes_once(
    client: Any, auth: Auth, catalog: InMemoryCatalog, payments: InMemoryPayments, db: Database,
) -> None:
    """v1's confirm continues the saga: commit, capture the client's authorisation,
    confirm; loyalty and notifications hear ``OrderConfirmed`` and their replies close
    the follow-ups (orders calls neither of them)."""
    headers = auth(email="alice@example.com")
    order = placed(client, headers)
    pay = payments.put(payment_for(order))
    key = new_key()
    r = confirm(client, headers, order["id"], pay.id, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "confirmed" and body["payment_id"] == pay.id
    assert (body["loyalty_status"], body["notification_status"]) == ("pending", "pending")
    oid = order["id"]
    assert catalog.effects[("commit", f"order-{oid}-commit")] == 1
    assert catalog.reservations[oid].status == "committed"
    assert catalog.on_hand[1] == 10 - 2 and catalog.reserved[1] == 0
    assert payments.payments[pay.id].status == "captured"
    published = participants_reply(db)
    assert [(e.type, e.data["order_id"]) for e in published] == [("OrderConfirmed", oid)]
    assert published[0].data["total"] == {"amount_minor": order["total"], "currency": "EUR"}
    assert "alice@example.com" not in published[0].to_json()
    done = client.get(f"/v1/orders/{oid}", headers=headers).json()
    assert (done["loyalty_status"], done["notification_status"]) == ("done", "done")
    # Confirming again (same key or another) replays and does nothing more.
    again = confirm(client, headers, oid, pay.id, key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["status"] == "confirmed"
    other_key = confirm(client, headers, oid, pay.id)
    assert other_key.status_code == 200
    assert catalog.calls[("commit", f"order-{oid}-commit")] == 1
    assert participants_reply(db) == []  # nothing published twice


@pytest.mark.parametrize("change, status, title", [
    ({"amount": 1}, 422, "Payment mismatch"),
    ({"currency": "USD"}, 422, "Payment mismatch"),
    ({"order_id": "another-order"}, 422, "Payment mismatch"),
    ({"customer_id": "bob"}, 422, "Payment mismatch"),
    ({"status": "declined"}, 409, "Payment not usable"),
    ({"status": "voided"}, 409, "Payment not usable"),
    ({"status": "refunded"}, 409, "Payment not usable"),
])
def test_payment_mismatch_is_refused_and_changes_nothing(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog,
    change: dict[str, Any], status: int, title: str,
) -> None:
    order = placed(client, auth())
    pay = payments.put(payment_for(order, **change))
    body = assert_problem(confirm(client, auth(), order["id"], pay.id), status)
    assert body["title"] == title
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "reserved" and after["payment_id"] is None
    assert not [k for k in catalog.calls if k[0] == "commit"]


def test_unknown_payment_is_422(client: Any, auth: Auth) -> None:
    order = placed(client, auth())
    assert assert_problem(confirm(client, auth(), order["id"], payment_id()),
                          422)["title"] == "Unknown payment"


def test_confirm_needs_a_reserved_order(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog
) -> None:
    order = placed(client, auth())
    cancel(client, auth(), order["id"])
    pay = payments.put(payment_for(order))
    assert_problem(confirm(client, auth(), order["id"], pay.id), 409)
    catalog.reservations_down = True
    pending = place(client, auth(), ITEMS)
    assert pending.status_code == 202
    pay = payments.put(payment_for(pending.json()))
    body = assert_problem(confirm(client, auth(), pending.json()["id"], pay.id), 409)
    assert body["order_status"] == "pending"


def test_confirmed_with_another_payment_is_409(
    client: Any, auth: Auth, payments: InMemoryPayments
) -> None:
    order = placed(client, auth())
    first = payments.put(payment_for(order))
    second = payments.put(payment_for(order))
    assert confirm(client, auth(), order["id"], first.id).status_code == 200
    assert_problem(confirm(client, auth(), order["id"], second.id), 409)


def test_payments_down_is_503_and_the_order_stays_reserved(
    client: Any, auth: Auth, payments: InMemoryPayments
) -> None:
    order, pay = paid(client, auth(), payments)
    payments.down = True
    assert_problem(confirm(client, auth(), order["id"], pay.id), 503)
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "reserved" and after["payment_id"] is None
    payments.down = False
    assert confirm(client, auth(), order["id"], pay.id).json()["status"] == "confirmed"


def test_follow_ups_are_the_participants_and_closed_by_their_replies(
    client: Any, auth: Auth, payments: InMemoryPayments, db: Database,
) -> None:
    """Loyalty down (its reply never came) leaves ``loyalty_status`` pending while the
    message's reply closes its own; a late reply closes it; a duplicate changes nothing."""
    order, pay = paid(client, auth(), payments)
    assert confirm(client, auth(), order["id"], pay.id).status_code == 200
    participants_reply(db, loyalty=False)
    body = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert (body["loyalty_status"], body["notification_status"]) == ("pending", "done")
    handler = OrderReplies(db)
    late = Envelope.new("PointsAwarded", {"order_id": order["id"], "customer_id": "alice",
                                          "points": 178}, source="loyalty")
    handler(late)
    handler(late)  # delivered twice
    body = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert (body["loyalty_status"], body["notification_status"]) == ("done", "done")
    trail = [e.type for e in trail_of(db, order["id"])]
    assert trail.count("loyalty.done") == 1 and trail.count("notification.done") == 1


def trail_of(db: Database, order_id: str) -> list[OrderEvent]:
    with db.session() as session:
        return SqlOrderRepository(session).events(order_id, 0, 100)


def test_a_reply_that_breaks_the_event_contract_is_a_poison_message(db: Database) -> None:
    bad = Envelope.new("PointsAwarded", {"order_id": "o-1", "email": "a@b.c"},
                       source="loyalty")
    with pytest.raises(PoisonMessage):
        OrderReplies(db)(bad)


def test_catalog_down_at_commit_is_503_then_recovery_confirms(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog, service: Any,
) -> None:
    order, pay = paid(client, auth(), payments)
    catalog.down = True
    body = assert_problem(confirm(client, auth(), order["id"], pay.id), 503)
    assert body["order_id"] == order["id"]
    during = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert during["status"] == "reserved" and during["payment_id"] == pay.id
    assert_problem(cancel(client, auth(), order["id"]), 409)  # being confirmed
    catalog.down = False
    assert service.resume_pending() == {"confirmation:confirmed": 1}
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "confirmed" and after["loyalty_status"] == "pending"
    assert catalog.effects[("commit", f"order-{order['id']}-commit")] == 1
    # The client's retry now simply answers the confirmed order.
    assert confirm(client, auth(), order["id"], pay.id).json()["status"] == "confirmed"


def test_a_commit_lost_on_the_way_back_is_not_repeated(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog,
) -> None:
    order, pay = paid(client, auth(), payments)
    catalog.lose_next_answer = True
    key = new_key()
    assert_problem(confirm(client, auth(), order["id"], pay.id, key), 503)
    assert catalog.reservations[order["id"]].status == "committed"
    r = confirm(client, auth(), order["id"], pay.id, key)
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert catalog.effects[("commit", f"order-{order['id']}-commit")] == 1
    assert catalog.on_hand[1] == 8


def test_a_reservation_gone_at_commit_is_409(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog,
) -> None:
    order, pay = paid(client, auth(), payments)
    del catalog.reservations[order["id"]]
    assert assert_problem(confirm(client, auth(), order["id"], pay.id),
                          409)["title"] == "Reservation not held"
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "reserved" and after["payment_id"] is None


def test_confirm_key_reused_for_another_payment_is_422(
    client: Any, auth: Auth, payments: InMemoryPayments
) -> None:
    order, pay = paid(client, auth(), payments)
    key = new_key()
    assert confirm(client, auth(), order["id"], pay.id, key).status_code == 200
    assert_problem(confirm(client, auth(), order["id"], payment_id(), key), 422)


# -- ownership --------------------------------------------------------------------------
def test_alice_cannot_see_cancel_or_confirm_bobs_order(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog
) -> None:
    order = placed(client, auth("bob"))
    oid = order["id"]
    pay = payments.put(payment_for(order))
    assert_problem(client.get(f"/v1/orders/{oid}", headers=auth("alice")), 404)
    assert_problem(cancel(client, auth("alice"), oid), 404)
    assert_problem(confirm(client, auth("alice"), oid, pay.id), 404)
    listed = client.get("/v1/orders", headers=auth("alice")).json()
    assert listed["total"] == 0
    assert client.get(f"/v1/orders/{oid}", headers=auth("bob")).json()["status"] == "reserved"
    assert catalog.reservations[oid].status == "held"
    # A plain client (no role) acts as itself only.
    assert_problem(client.get(f"/v1/orders/{oid}", headers=auth("demo-cli", role=None)), 404)


def test_idempotency_keys_are_per_caller(client: Any, auth: Auth) -> None:
    key = new_key()
    a = place(client, auth("alice"), ITEMS, key)
    b = place(client, auth("bob"), ITEMS, key)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert b.json()["customer_id"] == "bob"


def test_the_correlation_id_is_echoed(client: Any, auth: Auth) -> None:
    r = client.post("/v1/orders", json=ITEMS,
                    headers={**keyed(auth()), "X-Correlation-Id": "cid-orders-1"})
    assert r.headers["X-Correlation-Id"] == "cid-orders-1"


def test_confirming_a_pending_order_first_retries_its_reservation(
    client: Any, auth: Auth, payments: InMemoryPayments, catalog: InMemoryCatalog
) -> None:
    order = place_pending(client, auth(), ITEMS, catalog)
    pay = payments.put(payment_for(order))
    r = confirm(client, auth(), order["id"], pay.id)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed"
    assert catalog.effects[("reserve", f"order-{order['id']}-reserve")] == 1
