"""Bad input is answered 400 problem+json by the spec's validation, never 500, and
creates nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from orders_fakes import InMemoryCatalog
from orders_support import Auth, keyed, new_key

from tests.support.plugin import PROBLEM

ITEM = {"product_id": 1, "quantity": 1}

BAD_PLACEMENTS: dict[str, Any] = {
    "empty_object": {},
    "both_sources": {"source": "cart", "items": [ITEM]},
    "source_not_cart": {"source": "wishlist"},
    "source_null": {"source": None},
    "items_empty": {"items": []},
    "items_not_array": {"items": ITEM},
    "items_too_many": {"items": [ITEM] * 101},
    "quantity_zero": {"items": [{"product_id": 1, "quantity": 0}]},
    "quantity_negative": {"items": [{"product_id": 1, "quantity": -2}]},
    "quantity_too_big": {"items": [{"product_id": 1, "quantity": 1000}]},
    "quantity_huge": {"items": [{"product_id": 1, "quantity": 10**40}]},
    "quantity_string": {"items": [{"product_id": 1, "quantity": "1"}]},
    "quantity_float": {"items": [{"product_id": 1, "quantity": 1.5}]},
    "quantity_bool": {"items": [{"product_id": 1, "quantity": True}]},
    "quantity_missing": {"items": [{"product_id": 1}]},
    "product_zero": {"items": [{"product_id": 0, "quantity": 1}]},
    "product_too_big": {"items": [{"product_id": 2**31, "quantity": 1}]},
    "product_string": {"items": [{"product_id": "1", "quantity": 1}]},
    "item_extra_field": {"items": [{"product_id": 1, "quantity": 1, "price": 1}]},
    "price_smuggled": {"items": [ITEM], "total": 1},
    "customer_smuggled": {"items": [ITEM], "customer_id": "bob"},
    "status_smuggled": {"items": [ITEM], "status": "confirmed"},
    "currency_lower": {"items": [ITEM], "currency": "eur"},
    "currency_long": {"items": [ITEM], "currency": "EURO"},
    "currency_number": {"items": [ITEM], "currency": 978},
    "oversize": {"items": [ITEM], "note": "x" * 1_000_000},
    "array": [ITEM],
    "string": "cart",
    "null": None,
}

BAD_CONFIRMS: dict[str, Any] = {
    "missing": {},
    "null": {"payment_id": None},
    "number": {"payment_id": 42},
    "wrong_prefix": {"payment_id": "ref_" + "0" * 32},
    "too_short": {"payment_id": "pay_123"},
    "upper_hex": {"payment_id": "pay_" + "A" * 32},
    "extra_field": {"payment_id": "pay_" + "0" * 32, "amount": 1},
}


def assert_400(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 400 and body["title"]


@pytest.mark.parametrize("body", list(BAD_PLACEMENTS.values()), ids=list(BAD_PLACEMENTS))
def test_bad_placement_is_400_and_creates_nothing(
    client: Any, auth: Auth, catalog: InMemoryCatalog, body: Any
) -> None:
    r = client.post("/v1/orders", content=json.dumps(body),
                    headers={**keyed(auth()), "Content-Type": "application/json"})
    assert_400(r)
    assert client.get("/v1/orders", headers=auth()).json()["total"] == 0
    assert not catalog.calls


@pytest.fixture
def order_id(client: Any, auth: Auth) -> str:
    r = client.post("/v1/orders", json={"items": [ITEM]}, headers=keyed(auth()))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("body", list(BAD_CONFIRMS.values()), ids=list(BAD_CONFIRMS))
def test_bad_confirmation_is_400(client: Any, auth: Auth, order_id: str, body: Any) -> None:
    r = client.post(f"/v1/orders/{order_id}/confirm", json=body, headers=keyed(auth()))
    assert_400(r)
    assert client.get(f"/v1/orders/{order_id}", headers=auth()).json()["status"] == "reserved"


@pytest.mark.parametrize("bad_id", [
    "1", "not-a-uuid", "3F2A9C0D-1E4B-4D8F-9A6B-7C5D4E3F2A1B",
    "3f2a9c0d1e4b4d8f9a6b7c5d4e3f2a1b", "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b0",
    "' or 1=1 --",
])
@pytest.mark.parametrize("method, suffix", [("GET", ""), ("POST", "/cancel"),
                                            ("POST", "/confirm")])
def test_malformed_order_ids_are_400(client: Any, auth: Auth, bad_id: str, method: str,
                                     suffix: str) -> None:
    kwargs: dict[str, Any] = {"headers": keyed(auth())}
    if suffix == "/confirm":
        kwargs["json"] = {"payment_id": "pay_" + "0" * 32}
    assert_400(client.request(method, f"/v1/orders/{bad_id}{suffix}", **kwargs))


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=abc", "page_size=0", "page_size=101", "status=shipped",
    "status=", "customer_id=a%20b", "customer_id=" + "x" * 129, "unknown=1",
])
def test_bad_list_queries_are_400(client: Any, auth: Auth, query: str) -> None:
    assert_400(client.get(f"/v1/orders?{query}", headers=auth()))


def test_malformed_json_is_400(client: Any, auth: Auth) -> None:
    r = client.post("/v1/orders", content=b'{"items": [',
                    headers={**keyed(auth()), "Content-Type": "application/json"})
    assert_400(r)


def test_missing_body_is_400(client: Any, auth: Auth) -> None:
    r = client.post("/v1/orders", headers={**keyed(auth()), "Content-Type": "application/json"})
    assert_400(r)


def test_wrong_content_type_is_a_4xx_problem(client: Any, auth: Auth) -> None:
    r = client.post("/v1/orders", content=b"source=cart",
                    headers={**keyed(auth()),
                             "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 415), r.text
    assert r.headers["content-type"].startswith(PROBLEM)


def test_unknown_path_and_method_are_problems(client: Any, auth: Auth) -> None:
    r = client.get("/v1/orders/nothing/here", headers=auth())
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = client.delete("/v1/orders", headers=auth())
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)


def test_an_idempotency_key_too_long_is_400(client: Any, auth: Auth) -> None:
    r = client.post("/v1/orders", json={"items": [ITEM]},
                    headers={**auth(), "Idempotency-Key": new_key() + "x" * 128})
    assert_400(r)
