"""Bad input is a 400 problem+json, never a 500 (the spec is the validator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.plugin import PROBLEM, assert_problem

Auth = Callable[..., dict[str, str]]


def assert_400(response: Any) -> None:
    assert_problem(response, 400)


@pytest.mark.parametrize("params", [
    {"page_size": 1000}, {"page_size": 0}, {"page": 0}, {"page": "first"},
    {"min_price": -1}, {"max_price": "cheap"}, {"category": "coffee"}, {"in_stock": "maybe"},
    {"q": ""}, {"q": "x" * 101},
])
def test_bad_product_list_queries(client: Any, auth: Auth, params: dict[str, Any]) -> None:
    assert_400(client.get("/v1/products", headers=auth(), params=params))


def test_bad_category_list_query(client: Any, auth: Auth) -> None:
    assert_400(client.get("/v1/categories", headers=auth(), params={"page_size": 1000}))


def product(**changes: Any) -> dict[str, Any]:
    body = {"sku": "NEW-0001", "name": "New", "category_id": 1, "price": 100,
            "currency": "EUR"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("body", [
    product(price="12.99"), product(price=12.5), product(price=-1), product(currency="eur"),
    product(currency="EURO"), product(sku="lower-case"), product(sku="AB"), product(name=""),
    product(category_id="one"), product(category_id=0), product(active="yes"),
    product(colour="red"), product(sku=None), product(price=None), product(currency=None),
    {}, [], "text", None,
])
def test_bad_product_bodies(client: Any, auth: Auth, seeded: dict[str, Any], body: Any) -> None:
    assert_400(client.post("/v1/products", headers=auth(), json=body))


@pytest.mark.parametrize("body", [{}, {"price": "free"}, {"unknown": 1}, {"id": 5},
                                  {"created_at": "2026-01-01T00:00:00Z"}])
def test_bad_product_patches(client: Any, auth: Auth, seeded: dict[str, Any],
                             body: Any) -> None:
    assert_400(client.patch(f"/v1/products/{seeded['product']['id']}", headers=auth(),
                            json=body))


@pytest.mark.parametrize("body", [{"slug": "Has Spaces", "name": "x"}, {"name": "x"},
                                  {"slug": "ok", "name": "x", "extra": True}])
def test_bad_category_bodies(client: Any, auth: Auth, body: Any) -> None:
    assert_400(client.post("/v1/categories", headers=auth(), json=body))


@pytest.mark.parametrize("body", [{"on_hand": -1}, {"on_hand": "ten"}, {"on_hand": 1.5},
                                  {}, {"on_hand": 1, "reserved": 0}])
def test_bad_stock_bodies(client: Any, auth: Auth, seeded: dict[str, Any], body: Any) -> None:
    assert_400(client.put(f"/v1/products/{seeded['product']['id']}/stock", headers=auth(),
                          json=body))


@pytest.mark.parametrize("body", [{"delta": 0}, {"delta": "1"}, {}, {"delta": 1, "x": 1}])
def test_bad_adjustments(client: Any, auth: Auth, seeded: dict[str, Any], body: Any) -> None:
    assert_400(client.post(f"/v1/products/{seeded['product']['id']}/stock/adjustments",
                           headers=auth(), json=body))


def reservation(product_id: Any = 1, quantity: Any = 1, **changes: Any) -> dict[str, Any]:
    body = {"order_id": "order-1", "items": [{"product_id": product_id, "quantity": quantity}]}
    body.update(changes)
    return body


@pytest.mark.parametrize("body", [
    reservation(quantity=0), reservation(quantity=-3), reservation(quantity="2"),
    reservation(quantity=1.5), reservation(product_id="one"), reservation(items=[]),
    reservation(order_id=""), reservation(order_id="has spaces"), reservation(extra=1),
    {"order_id": "order-1"}, {"items": [{"product_id": 1, "quantity": 1}]},
    reservation(items=[{"product_id": 1}]),
    reservation(items=[{"product_id": 1, "quantity": 1, "price": 5}]),
])
def test_bad_reservation_bodies(client: Any, auth: Auth, seeded: dict[str, Any],
                                body: Any) -> None:
    response = client.post("/v1/reservations", headers=auth(**{"Idempotency-Key": "key-bad-1"}),
                           json=body)
    assert_400(response)


@pytest.mark.parametrize("key", [None, "short", "has spaces in it", "x" * 129])
def test_idempotency_key_is_required_and_checked(client: Any, auth: Auth,
                                                 seeded: dict[str, Any], key: Any) -> None:
    headers = auth() if key is None else auth(**{"Idempotency-Key": key})
    body = reservation(product_id=seeded["product"]["id"])
    assert_400(client.post("/v1/reservations", headers=headers, json=body))
    assert_400(client.post("/v1/reservations/order-held/commit", headers=headers))
    assert_400(client.post("/v1/reservations/order-held/release", headers=headers))


def test_malformed_json_is_400(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    assert_400(client.post("/v1/products", headers=headers, content=b"{not json"))


@pytest.mark.parametrize("path", ["/v1/products/abc", "/v1/products/-1", "/v1/categories/x"])
def test_non_numeric_ids_are_client_errors(client: Any, auth: Auth, path: str) -> None:
    response = client.get(path, headers=auth())
    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize("path", ["/v1/products/0", "/v1/products/99999999999"])
def test_out_of_range_ids_are_400(client: Any, auth: Auth, path: str) -> None:
    assert_400(client.get(path, headers=auth()))
