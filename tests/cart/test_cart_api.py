"""Every operation of the cart API, ownership and persistence (fake catalog)."""

from __future__ import annotations

from typing import Any

from cart_fakes import InMemoryCatalog

from charter.db import Database
from charter.testing import TokenFactory
from services.cart.app import create_app
from tests.support.plugin import assert_problem


def add(client: Any, headers: dict[str, str], product_id: int, quantity: int = 1) -> Any:
    return client.post(
        "/v1/cart/items", json={"product_id": product_id, "quantity": quantity}, headers=headers
    )


def test_new_user_has_an_empty_cart(client: Any, auth: Any) -> None:
    r = client.get("/v1/cart", headers=auth("alice"))
    assert r.status_code == 200
    assert r.json() == {
        "user_id": "alice",
        "items": [],
        "item_count": 0,
        "total": 0,
        "currency": None,
        "pricing": "current",
        "updated_at": None,
    }


def test_add_item_creates_a_line_priced_from_the_catalog(client: Any, auth: Any) -> None:
    r = add(client, auth("alice"), 1, 3)
    assert r.status_code == 201
    assert r.headers["location"] == "/v1/cart/items/1"
    body = r.json()
    assert body["items"] == [
        {
            "product_id": 1,
            "sku": "SKU-1",
            "name": "Espresso beans 1 kg",
            "unit_price": 1299,
            "currency": "EUR",
            "quantity": 3,
            "line_total": 3897,
            "availability": "in_stock",
            "available_quantity": 10,
        }
    ]
    assert body["total"] == 3897
    assert body["item_count"] == 3
    assert body["currency"] == "EUR"
    assert body["pricing"] == "current"


def test_adding_an_existing_product_increases_its_quantity(client: Any, auth: Any) -> None:
    assert add(client, auth(), 1, 2).status_code == 201
    r = add(client, auth(), 1, 3)
    assert r.status_code == 200
    assert [(i["product_id"], i["quantity"]) for i in r.json()["items"]] == [(1, 5)]


def test_get_cart_shows_items_and_totals(client: Any, auth: Any) -> None:
    add(client, auth(), 1, 2)
    add(client, auth(), 2, 1)
    r = client.get("/v1/cart", headers=auth())
    assert r.status_code == 200
    body = r.json()
    assert [i["product_id"] for i in body["items"]] == [1, 2]
    assert body["total"] == 2 * 1299 + 4999
    assert body["item_count"] == 3
    assert body["updated_at"]


def test_get_cart_refreshes_prices_and_availability(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    add(client, auth(), 1, 4)
    catalog.put(1, name="Espresso beans 1 kg (new)", price=1399, available=2)
    item = client.get("/v1/cart", headers=auth()).json()["items"][0]
    assert (item["name"], item["unit_price"], item["line_total"]) == (
        "Espresso beans 1 kg (new)", 1399, 4 * 1399,
    )
    assert item["availability"] == "insufficient_stock"
    assert item["available_quantity"] == 2
    catalog.put(1, price=1399, active=False)
    assert client.get("/v1/cart", headers=auth()).json()["items"][0]["availability"] == (
        "unavailable"
    )
    del catalog.products[1]
    item = client.get("/v1/cart", headers=auth()).json()["items"][0]
    assert item["availability"] == "unavailable"
    assert item["unit_price"] == 1399  # last known price kept


def test_add_unknown_product_is_404(client: Any, auth: Any) -> None:
    r = add(client, auth(), 999)
    assert_problem(r, 404)
    assert "999" in r.json()["detail"]


def test_add_inactive_product_is_422(client: Any, auth: Any) -> None:
    r = add(client, auth(), 4)
    assert_problem(r, 422)


def test_add_more_than_available_is_409(client: Any, auth: Any) -> None:
    r = add(client, auth(), 3)  # none in stock
    assert r.status_code == 409
    assert r.json()["available"] == 0
    assert add(client, auth(), 2, 3).status_code == 201
    r = add(client, auth(), 2, 1)  # 3 + 1 > 3 available
    assert_problem(r, 409)
    assert client.get("/v1/cart", headers=auth()).json()["items"][0]["quantity"] == 3


def test_add_beyond_99_in_total_is_422(client: Any, auth: Any, catalog: InMemoryCatalog) -> None:
    catalog.put(1, available=1000)
    assert add(client, auth(), 1, 99).status_code == 201
    r = add(client, auth(), 1, 1)
    assert_problem(r, 422)


def test_add_other_currency_is_422(client: Any, auth: Any) -> None:
    add(client, auth(), 1)
    r = add(client, auth(), 5)
    assert r.status_code == 422
    assert "USD" in r.json()["detail"]


def test_set_item_quantity(client: Any, auth: Any) -> None:
    add(client, auth(), 1, 2)
    r = client.put("/v1/cart/items/1", json={"quantity": 7}, headers=auth())
    assert r.status_code == 200
    assert r.json()["items"][0]["quantity"] == 7
    assert r.json()["total"] == 7 * 1299
    r = client.put("/v1/cart/items/1", json={"quantity": 1}, headers=auth())
    assert r.status_code == 200 and r.json()["item_count"] == 1


def test_set_quantity_above_stock_is_409(client: Any, auth: Any) -> None:
    add(client, auth(), 2, 1)
    r = client.put("/v1/cart/items/2", json={"quantity": 4}, headers=auth())
    assert r.status_code == 409
    assert client.get("/v1/cart", headers=auth()).json()["items"][0]["quantity"] == 1


def test_decreasing_works_even_when_the_product_became_unsellable(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    add(client, auth(), 1, 5)
    catalog.put(1, active=False)
    r = client.put("/v1/cart/items/1", json={"quantity": 2}, headers=auth())
    assert r.status_code == 200
    assert client.put("/v1/cart/items/1", json={"quantity": 3}, headers=auth()).status_code == 422


def test_set_quantity_of_product_not_in_cart_is_404(client: Any, auth: Any) -> None:
    r = client.put("/v1/cart/items/1", json={"quantity": 1}, headers=auth())
    assert_problem(r, 404)


def test_remove_item(client: Any, auth: Any) -> None:
    add(client, auth(), 1)
    add(client, auth(), 2)
    r = client.delete("/v1/cart/items/1", headers=auth())
    assert r.status_code == 204
    assert r.content == b""
    assert [i["product_id"] for i in client.get("/v1/cart", headers=auth()).json()["items"]] == [2]
    r = client.delete("/v1/cart/items/1", headers=auth())
    assert_problem(r, 404)


def test_clear_cart(client: Any, auth: Any) -> None:
    add(client, auth(), 1)
    add(client, auth(), 2)
    assert client.delete("/v1/cart", headers=auth()).status_code == 204
    body = client.get("/v1/cart", headers=auth()).json()
    assert body["items"] == [] and body["total"] == 0
    assert client.delete("/v1/cart", headers=auth()).status_code == 204  # idempotent


def test_removed_line_goes_to_the_end_when_added_again(client: Any, auth: Any) -> None:
    for pid in (1, 2):
        add(client, auth(), pid)
    client.delete("/v1/cart/items/1", headers=auth())
    add(client, auth(), 1)
    assert [i["product_id"] for i in client.get("/v1/cart", headers=auth()).json()["items"]] == [
        2, 1,
    ]


# -- ownership ------------------------------------------------------------------------------


def test_carts_are_per_user(client: Any, auth: Any) -> None:
    add(client, auth("bob"), 2, 2)
    add(client, auth("alice"), 1, 1)
    alice = client.get("/v1/cart", headers=auth("alice")).json()
    assert alice["user_id"] == "alice"
    assert [i["product_id"] for i in alice["items"]] == [1]
    bob = client.get("/v1/cart", headers=auth("bob")).json()
    assert [(i["product_id"], i["quantity"]) for i in bob["items"]] == [(2, 2)]


def test_alice_cannot_change_bobs_items(client: Any, auth: Any) -> None:
    add(client, auth("bob"), 2, 2)
    before = client.get("/v1/cart", headers=auth("bob")).json()["items"]
    # Item ids are scoped to the caller: bob's line 2 does not exist for alice.
    r = client.put("/v1/cart/items/2", json={"quantity": 1}, headers=auth("alice"))
    assert r.status_code == 404
    assert client.delete("/v1/cart/items/2", headers=auth("alice")).status_code == 404
    assert client.delete("/v1/cart", headers=auth("alice")).status_code == 204
    assert add(client, auth("alice"), 2, 1).status_code == 201  # her own line, not bob's
    assert client.get("/v1/cart", headers=auth("bob")).json()["items"] == before
    alice = client.get("/v1/cart", headers=auth("alice")).json()
    assert [(i["product_id"], i["quantity"]) for i in alice["items"]] == [(2, 1)]


def test_no_customer_operation_takes_a_user_id(client: Any, auth: Any) -> None:
    from charter import specs

    spec = specs.load("cart")

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(target)
        return node

    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters" or op["operationId"] == "get_user_cart":
                continue
            params = [resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            assert all("user" not in p["name"] for p in params), (path, method)
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = resolve(body.get("schema", {}))
            assert "user_id" not in schema.get("properties", {}), (path, method)


def test_customer_on_staff_path_is_403(client: Any, auth: Any) -> None:
    add(client, auth("bob"), 2)
    for sub in ("alice", "bob"):
        r = client.get("/v1/carts/bob", headers=auth(sub))
        assert_problem(r, 403)
    r = client.get("/v1/carts/bob", headers=auth("mallory", role=None))
    assert r.status_code == 403


def test_staff_and_admin_can_read_a_customers_cart(client: Any, auth: Any) -> None:
    add(client, auth("bob"), 2, 2)
    for role in ("staff", "admin"):
        r = client.get("/v1/carts/bob", headers=auth("carol", scope="cart:read", role=role))
        assert r.status_code == 200
        body = r.json()
        assert body["user_id"] == "bob"
        assert [(i["product_id"], i["quantity"]) for i in body["items"]] == [(2, 2)]
    r = client.get("/v1/carts/bob", headers=auth("carol", scope="cart:write", role="staff"))
    assert r.status_code == 403


# -- persistence -----------------------------------------------------------------------------


def test_cart_survives_a_restart(
    db_url: str, tokens: TokenFactory, catalog: InMemoryCatalog, auth: Any
) -> None:
    first = Database(db_url)
    with create_app(db=first, verifier=tokens.verifier(), catalog=catalog).test_client() as c:
        assert add(c, auth(), 1, 2).status_code == 201
        assert add(c, auth(), 2, 1).status_code == 201
    first.dispose()
    second = Database(db_url)
    try:
        with create_app(db=second, verifier=tokens.verifier(), catalog=catalog).test_client() as c:
            body = c.get("/v1/cart", headers=auth()).json()
        assert [(i["product_id"], i["quantity"]) for i in body["items"]] == [(1, 2), (2, 1)]
    finally:
        second.dispose()


def test_prices_refreshed_on_read_are_remembered(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    add(client, auth(), 1, 1)
    catalog.put(1, name="Renamed", price=1500)
    client.get("/v1/cart", headers=auth())
    catalog.down = True
    item = client.get("/v1/cart", headers=auth()).json()["items"][0]
    assert (item["name"], item["unit_price"]) == ("Renamed", 1500)


def test_health_and_metrics(client: Any) -> None:
    assert client.get("/health/live").json()["service"] == "cart"
    assert client.get("/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200
