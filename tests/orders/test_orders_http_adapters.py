"""The HTTP adapters against tiny real servers: what they send (checked against the other
services' specs), and how every kind of answer is mapped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from charter import problem_types, specs
from services.catalog_client.client import HttpCatalogClient
from services.orders.clients import HttpCart, HttpPayments
from services.orders.ports import (
    CartForbidden,
    CartUnavailable,
    CatalogUnavailable,
    PaymentsUnavailable,
    ReserveOutcome,
    TransitionOutcome,
)
from tests.support.plugin import Seen, StubServer, free_port

ORDER_ID = "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"


def request_schema_check(api: str, schema: str, body: Any) -> None:
    """``body`` is valid for ``openapi/<api>/v1.yaml``'s ``components/schemas/<schema>``."""
    spec = specs.load(api)
    root = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    jsonschema.Draft4Validator(root).validate(body)


@pytest.fixture
def stub(stub_server: Callable[..., StubServer]) -> StubServer:
    return stub_server(lambda seen: (500, None))


def problem(slug: str, **extensions: Any) -> tuple[int, dict[str, Any]]:
    """A typed problem answer as another environment sends it: another base URL and a
    reworded title (the clients decide on the type's slug only)."""
    status = problem_types.get(slug).status
    return status, {"type": f"https://elsewhere.example/problems/{slug}",
                    "title": "Reworded title", "status": status, **extensions}


def answer(stub: StubServer, *replies: tuple[int, Any]) -> None:
    """Answer the next requests with ``replies`` in turn (the last one repeats)."""
    queue = list(replies)

    def responder(_seen: Seen) -> tuple[int, Any]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    stub.responder = responder


def catalog(stub: StubServer) -> HttpCatalogClient:
    return HttpCatalogClient(stub.url, lambda: "read-token", lambda: "reserve-token", timeout=1.0)


PRODUCT = {"id": 1, "sku": "COF-0001", "name": "Espresso", "price": 2490, "currency": "EUR",
           "active": True, "description": "", "category_id": 1}


# -- catalog ----------------------------------------------------------------------------
def test_catalog_product_reads_use_the_read_token(stub: StubServer) -> None:
    answer(stub, (200, PRODUCT))
    product = catalog(stub).get_product(1)
    assert product is not None and (product.sku, product.price, product.active) == (
        "COF-0001", 2490, True)
    assert stub.seen[0].path == "/v1/products/1"
    assert stub.seen[0].headers["authorization"] == "Bearer read-token"
    answer(stub, (404, {"title": "Not Found", "status": 404}))
    assert catalog(stub).get_product(2) is None


@pytest.mark.parametrize("reply", [(500, None), (200, ["not", "an", "object"]),
                                   (200, {"id": 1}), (403, {"title": "Forbidden"})])
def test_catalog_failures_are_unavailable(stub: StubServer, reply: tuple[int, Any]) -> None:
    answer(stub, reply)
    with pytest.raises(CatalogUnavailable):
        catalog(stub).get_product(1)


def test_reserve_sends_the_key_the_reserve_token_and_a_valid_body(stub: StubServer) -> None:
    answer(stub, (201, {"order_id": ORDER_ID, "status": "held", "items": []}))
    result = catalog(stub).reserve(ORDER_ID, [(1, 2), (3, 1)], f"order-{ORDER_ID}-reserve")
    assert result.outcome is ReserveOutcome.HELD
    seen = stub.seen[0]
    assert (seen.method, seen.path) == ("POST", "/v1/reservations")
    assert seen.headers["idempotency-key"] == f"order-{ORDER_ID}-reserve"
    assert seen.headers["authorization"] == "Bearer reserve-token"
    assert seen.json() == {"order_id": ORDER_ID, "items": [
        {"product_id": 1, "quantity": 2}, {"product_id": 3, "quantity": 1}]}
    request_schema_check("catalog", "ReservationCreate", seen.json())


def test_reserve_maps_shortage_refusal_and_existing(stub: StubServer) -> None:
    shortages = [{"product_id": 2, "requested": 3, "available": 1}]
    answer(stub, problem("insufficient-stock", detail="short", product_id=2,
                         shortages=shortages))
    result = catalog(stub).reserve(ORDER_ID, [(2, 3)], "order-x-reserve")
    assert result.outcome is ReserveOutcome.SHORTAGE and result.shortages == shortages

    answer(stub, problem("unknown-product", detail="gone", product_id=9, product_ids=[9]))
    result = catalog(stub).reserve(ORDER_ID, [(9, 1)], "order-x-reserve")
    assert result.outcome is ReserveOutcome.REFUSED and result.product_ids == [9]

    answer(stub, problem("reservation-exists"),
           (200, {"order_id": ORDER_ID, "status": "held", "items": []}))
    result = catalog(stub).reserve(ORDER_ID, [(1, 1)], "order-x-reserve")
    assert result.outcome is ReserveOutcome.HELD
    assert stub.seen[-1].method == "GET"
    assert stub.seen[-1].path == f"/v1/reservations/{ORDER_ID}"


@pytest.mark.parametrize("reply", [
    problem("request-in-progress"),
    problem("idempotency-key-reused"),
    (409, {"title": "Insufficient stock", "status": 409}),  # untyped: not trusted
    problem("conflict", shortages=[{"product_id": 2, "requested": 3, "available": 1}]),
    (503, None),
    (400, {"title": "Bad Request", "status": 400}),
])
def test_reserve_without_an_answer_is_unavailable(stub: StubServer,
                                                  reply: tuple[int, Any]) -> None:
    answer(stub, reply)
    with pytest.raises(CatalogUnavailable):
        catalog(stub).reserve(ORDER_ID, [(1, 1)], "order-x-reserve")


def test_keyed_posts_are_retried_once_with_the_same_key(stub: StubServer) -> None:
    answer(stub, (503, None), (201, {"order_id": ORDER_ID, "status": "held", "items": []}))
    assert catalog(stub).reserve(ORDER_ID, [(1, 1)], "order-x-reserve").outcome is \
        ReserveOutcome.HELD
    assert [s.headers["idempotency-key"] for s in stub.seen] == ["order-x-reserve"] * 2


def test_a_slow_catalog_times_out_as_unavailable(
        stub_server: Callable[..., StubServer]) -> None:
    # The stub holds every answer until it is closed (at most 1.5 s); the timeout is 1 s.
    slow = stub_server(lambda seen: (201, {}), delay=1.5)
    with pytest.raises(CatalogUnavailable):
        catalog(slow).reserve(ORDER_ID, [(1, 1)], "order-x-reserve")
    assert slow.paths  # it did reach the catalog


def test_an_unreachable_catalog_is_unavailable() -> None:
    client = HttpCatalogClient(f"http://127.0.0.1:{free_port()}", lambda: "t", lambda: "t",
                               timeout=0.5)
    with pytest.raises(CatalogUnavailable):
        client.get_product(1)


@pytest.mark.parametrize("action", ["commit", "release"])
def test_commit_and_release(stub: StubServer, action: str) -> None:
    client = catalog(stub)
    call = getattr(client, action)
    answer(stub, (200, {"order_id": ORDER_ID, "status": "committed", "items": []}))
    assert call(ORDER_ID, f"order-{ORDER_ID}-{action}").outcome is TransitionOutcome.DONE
    assert stub.seen[0].path == f"/v1/reservations/{ORDER_ID}/{action}"
    assert stub.seen[0].headers["idempotency-key"] == f"order-{ORDER_ID}-{action}"
    assert stub.seen[0].headers["authorization"] == "Bearer reserve-token"
    answer(stub, problem("not-found"))
    assert call(ORDER_ID, "order-x-key").outcome is TransitionOutcome.NOT_FOUND
    answer(stub, problem("invalid-reservation-state"))
    assert call(ORDER_ID, "order-x-key").outcome is TransitionOutcome.CONFLICT
    for busy in ("request-in-progress", "concurrent-update"):
        answer(stub, problem(busy))
        with pytest.raises(CatalogUnavailable):
            call(ORDER_ID, "order-x-key")
    answer(stub, (409, {"title": "Invalid reservation state", "status": 409}))  # untyped
    with pytest.raises(CatalogUnavailable):
        call(ORDER_ID, "order-x-key")


# -- cart -------------------------------------------------------------------------------
CART = {"user_id": "alice", "items": [
    {"product_id": 1, "sku": "COF-0001", "name": "Espresso", "unit_price": 2490,
     "currency": "EUR", "quantity": 2, "line_total": 4980, "availability": "in_stock",
     "available_quantity": 10}],
    "item_count": 2, "total": 4980, "currency": "EUR", "pricing": "current",
    "updated_at": None}


def test_cart_is_read_and_cleared_with_the_callers_own_token(stub: StubServer) -> None:
    answer(stub, (200, CART), (204, None))
    cart = HttpCart(stub.url, timeout=1.0)
    snapshot = cart.get_cart("Bearer alices-token", "alice")
    assert snapshot.user_id == "alice" and snapshot.pricing == "current"
    assert [(i.product_id, i.quantity, i.unit_price) for i in snapshot.items] == [(1, 2, 2490)]
    cart.clear_cart("Bearer alices-token", "alice")
    assert [(s.method, s.path) for s in stub.seen] == [("GET", "/v1/cart"), ("DELETE", "/v1/cart")]
    assert all(s.headers["authorization"] == "Bearer alices-token" for s in stub.seen)


@pytest.mark.parametrize("kind", ["unauthorized", "insufficient-scope", "forbidden"])
def test_cart_refusing_the_token_is_forbidden(stub: StubServer, kind: str) -> None:
    answer(stub, problem(kind))
    with pytest.raises(CartForbidden):
        HttpCart(stub.url, timeout=1.0).get_cart("Bearer t", "alice")


def test_cart_of_another_user_or_garbage_is_unavailable(stub: StubServer) -> None:
    answer(stub, (200, {**CART, "user_id": "bob"}))
    with pytest.raises(CartUnavailable):
        HttpCart(stub.url, timeout=1.0).get_cart("Bearer t", "alice")
    answer(stub, (200, {"items": "nope"}))
    with pytest.raises(CartUnavailable):
        HttpCart(stub.url, timeout=1.0).get_cart("Bearer t", "alice")
    answer(stub, (500, None))
    with pytest.raises(CartUnavailable):
        HttpCart(stub.url, timeout=1.0).clear_cart("Bearer t", "alice")


# -- payments ---------------------------------------------------------------------------
def test_payments_are_read_with_the_internal_token(stub: StubServer) -> None:
    pid = "pay_" + "a" * 32
    answer(stub, (200, {"id": pid, "order_id": ORDER_ID, "customer_id": "alice",
                        "amount": 4980, "currency": "EUR", "status": "authorized"}))
    payments = HttpPayments(stub.url, lambda: "payments-token", timeout=1.0)
    payment = payments.get_payment(pid)
    assert payment is not None and (payment.amount, payment.status) == (4980, "authorized")
    assert stub.seen[0].path == f"/v1/payments/{pid}"
    assert stub.seen[0].headers["authorization"] == "Bearer payments-token"
    answer(stub, (404, {"title": "Not Found", "status": 404}))
    assert payments.get_payment(pid) is None
    answer(stub, (200, {"id": pid}))
    with pytest.raises(PaymentsUnavailable):
        payments.get_payment(pid)


# -- loyalty ----------------------------------------------------------------------------
