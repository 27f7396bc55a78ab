"""Never half-done: no reserved stock without an order, no reserved order without a
reservation, no stock reserved twice — whatever fails, and whenever."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orders_fakes import InMemoryCart, InMemoryCatalog
from orders_support import Auth, cancel, new_key, place, place_pending

from charter.db import utcnow
from charter.security.principal import Principal
from services.orders.services import Answer, Caller, OrderService, PlaceRequest
from tests.support.plugin import assert_problem, run_threads

ITEMS = {"items": [{"product_id": 1, "quantity": 2}]}


def reserve_key(order_id: str) -> tuple[str, str]:
    return ("reserve", f"order-{order_id}-reserve")


def test_shortage_rejects_and_reserves_nothing(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    body = {"items": [{"product_id": 1, "quantity": 5}, {"product_id": 2, "quantity": 5}]}
    problem = assert_problem(place(client, auth(), body), 409)
    assert problem["shortages"] == [{"product_id": 2, "requested": 5, "available": 2}]
    assert catalog.reserved[1] == 0 and catalog.reserved[2] == 0
    assert catalog.reservations == {}
    order = client.get(f"/v1/orders/{problem['order_id']}", headers=auth()).json()
    assert order["status"] == "rejected"


def test_catalog_down_during_placement_leaves_a_pending_order_reserved_once_on_recovery(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    catalog.reservations_down = True
    r = place(client, auth(), ITEMS)
    assert r.status_code == 202, r.text
    assert r.headers["Retry-After"] == "2"
    order = r.json()
    assert order["status"] == "pending"
    assert r.headers["Location"] == f"/v1/orders/{order['id']}"
    assert catalog.reserved[1] == 0

    # Recovery while the catalog is still down changes nothing.
    assert service.resume_pending() == {"reservation:pending": 1}
    catalog.reservations_down = False
    report = service.resume_pending(utcnow())
    assert report == {"reservation:reserved": 1}
    assert catalog.effects[reserve_key(order["id"])] == 1
    assert catalog.reserved[1] == 2
    # Nothing more to do; running again and reading the order reserve nothing more.
    assert service.resume_pending() == {}
    again = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert again["status"] == "reserved"
    assert catalog.effects[reserve_key(order["id"])] == 1
    assert catalog.reserved[1] == 2


def test_recovery_leaves_orders_changed_after_now_alone(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    order = place_pending(client, auth(), ITEMS, catalog)
    assert service.resume_pending(utcnow() - timedelta(minutes=5)) == {}
    assert service.resume_pending(utcnow()) == {"reservation:reserved": 1}
    assert catalog.reservations[order["id"]].status == "held"


def test_reading_a_pending_order_retries_the_reservation(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    catalog.reservations_down = True
    order = place(client, auth(), ITEMS).json()
    assert client.get(f"/v1/orders/{order['id']}", headers=auth()).json()["status"] == "pending"
    catalog.reservations_down = False
    assert client.get(f"/v1/orders/{order['id']}", headers=auth()).json()["status"] == "reserved"
    assert catalog.effects[reserve_key(order["id"])] == 1


def test_a_reservation_whose_answer_was_lost_is_not_made_twice(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    catalog.lose_next_answer = True
    r = place(client, auth(), ITEMS)
    assert r.status_code == 202
    order_id = r.json()["id"]
    assert catalog.reserved[1] == 2  # the catalog did hold the stock
    assert service.resume_pending() == {"reservation:reserved": 1}
    assert catalog.calls[reserve_key(order_id)] == 2
    assert catalog.effects[reserve_key(order_id)] == 1
    assert catalog.reserved[1] == 2


def test_same_key_same_order_one_reservation(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    key = new_key()
    first = place(client, auth(), ITEMS, key)
    second = place(client, auth(), ITEMS, key)
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert catalog.effects[reserve_key(first.json()["id"])] == 1
    assert catalog.reserved[1] == 2
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 1


def test_same_key_replays_a_rejection_and_a_pending_order(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    key = new_key()
    body = {"items": [{"product_id": 3, "quantity": 1}]}
    first = assert_problem(place(client, auth(), body, key), 409)
    r = place(client, auth(), body, key)
    again = assert_problem(r, 409)
    assert again["order_id"] == first["order_id"]
    assert r.headers["Idempotent-Replayed"] == "true"

    key = new_key()
    pending = place_pending(client, auth(), ITEMS, catalog, key)
    retried = place(client, auth(), ITEMS, key)  # the retry drives the reservation
    assert retried.status_code == 201 and retried.json()["status"] == "reserved"
    assert retried.json()["id"] == pending["id"]
    assert catalog.effects[reserve_key(pending["id"])] == 1


def test_same_key_with_another_body_is_422(client: Any, auth: Auth) -> None:
    key = new_key()
    assert place(client, auth(), ITEMS, key).status_code == 201
    other = {"items": [{"product_id": 1, "quantity": 3}]}
    body = assert_problem(place(client, auth(), other, key), 422)
    assert "Idempotency-Key" in body["detail"]
    assert_problem(place(client, auth(), {"source": "cart"}, key), 422)


def test_a_replay_does_not_read_the_cart_again(
    client: Any, auth: Auth, cart: InMemoryCart
) -> None:
    key = new_key()
    assert place(client, auth(), {"source": "cart"}, key).status_code == 201
    seen = len(cart.seen)
    assert place(client, auth(), {"source": "cart"}, key).status_code == 201
    assert len(cart.seen) == seen


def test_concurrent_placements_with_one_key_make_one_order(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    key = new_key()
    caller = Caller(Principal("alice", "customer", frozenset({"orders:write"})))
    request = PlaceRequest.from_body(ITEMS)
    # exceptions are collected in place and shown by the assertion below
    answers = run_threads(4, lambda _i: service.place(caller, key, request))
    assert len(answers) == 4 and all(isinstance(a, Answer) for a in answers), answers
    ids = {a.order.id for a in answers}
    assert len(ids) == 1
    assert sorted(a.replayed for a in answers) == [False, True, True, True]
    (order_id,) = ids
    assert catalog.effects[reserve_key(order_id)] == 1
    assert catalog.reserved[1] == 2
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 1


def test_cancel_with_the_catalog_down_is_retried_until_released(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    order = place(client, auth(), ITEMS).json()
    catalog.down = True
    r = cancel(client, auth(), order["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["release_status"] == "pending_retry"
    assert catalog.reserved[1] == 2
    catalog.down = False
    assert service.resume_pending() == {"release:done": 1}
    assert catalog.reserved[1] == 0
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["release_status"] == "done"


def test_reading_a_cancelled_order_retries_its_release(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    order = place(client, auth(), ITEMS).json()
    catalog.down = True
    cancel(client, auth(), order["id"])
    catalog.down = False
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["release_status"] == "done" and catalog.reserved[1] == 0


def test_cancelling_a_pending_order_then_a_late_reservation_is_given_back(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    catalog.reservations_down = True
    order = place(client, auth(), ITEMS).json()
    cancelled = cancel(client, auth(), order["id"])
    assert cancelled.json()["status"] == "cancelled"
    catalog.reservations_down = False
    # The reservation request was in flight (or is retried) after the cancellation.
    catalog.reserve(order["id"], [(1, 2)], f"order-{order['id']}-reserve")
    assert catalog.reserved[1] == 2
    service._drive_reservation(order["id"])  # what the placement does with the answer
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "cancelled" and after["release_status"] == "done"
    assert catalog.reserved[1] == 0
    assert catalog.reservations[order["id"]].status == "released"


def test_cancelled_pending_order_is_not_reserved_by_recovery(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    catalog.reservations_down = True
    order = place(client, auth(), ITEMS).json()
    cancel(client, auth(), order["id"])
    catalog.reservations_down = False
    service.resume_pending()
    assert catalog.calls[reserve_key(order["id"])] == 1  # only the original attempt
    assert catalog.reserved[1] == 0


def test_a_product_refused_at_reservation_rejects_the_order_with_422(
    client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    catalog.reservations_down = True
    order = place(client, auth(), ITEMS).json()
    catalog.put(1, active=False)  # deactivated while the order was pending
    catalog.reservations_down = False
    after = client.get(f"/v1/orders/{order['id']}", headers=auth()).json()
    assert after["status"] == "rejected" and "not for sale" in after["reason"]
    assert after["shortages"] is None
    assert catalog.reservations == {}
    r = client.post(f"/v1/orders/{order['id']}/cancel",
                    headers={**auth(), "Idempotency-Key": new_key()})
    assert_problem(r, 409)


def test_every_reserved_order_has_a_held_reservation_and_vice_versa(
    client: Any, auth: Auth, catalog: InMemoryCatalog, service: OrderService
) -> None:
    """A mixed run with failures injected everywhere ends consistent after recovery."""
    for i in range(12):
        catalog.reservations_down = i % 3 == 0
        catalog.lose_next_answer = i % 4 == 1
        place(client, auth(f"user-{i % 3}"), {"items": [{"product_id": 1 + i % 2,
                                                           "quantity": 1}]})
    catalog.reservations_down = catalog.lose_next_answer = False
    service.resume_pending()
    staff = auth("carol", role="staff")
    orders = client.get("/v1/orders?page_size=100", headers=staff).json()["items"]
    held = {oid for oid, r in catalog.reservations.items() if r.status == "held"}
    assert {o["id"] for o in orders if o["status"] == "reserved"} == held
    assert all(o["status"] in ("reserved", "rejected") for o in orders)
    for key, count in catalog.effects.items():
        assert count == 1, key
    reserved_units = sum(o["item_count"] for o in orders if o["status"] == "reserved")
    assert reserved_units == sum(catalog.reserved.values())
