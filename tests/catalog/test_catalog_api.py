"""Every catalog operation over HTTP: happy paths, pagination, filters, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from catalog_support import seed_small

from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app
from services.catalog.domain import Product
from services.catalog.services import CatalogService
from tests.support.plugin import assert_problem

Auth = Callable[..., dict[str, str]]

def make_products(service: CatalogService, count: int, category_id: int) -> list[Product]:
    return [service.create_product(sku=f"SKU-{i:04d}", name=f"Item {i}",
                                   category_id=category_id, price=100 * i, currency="EUR")
            for i in range(1, count + 1)]


# categories ------------------------------------------------------------------------
def test_category_lifecycle(client: Any, auth: Auth) -> None:
    created = client.post("/v1/categories", headers=auth(),
                          json={"slug": "tea", "name": "Tea", "description": "Loose leaf"})
    assert created.status_code == 201, created.text
    category = created.json()
    assert created.headers["location"] == f"/v1/categories/{category['id']}"
    assert category["slug"] == "tea" and category["description"] == "Loose leaf"
    assert category["created_at"].endswith("Z")

    got = client.get(f"/v1/categories/{category['id']}", headers=auth())
    assert got.status_code == 200 and got.json() == category

    patched = client.patch(f"/v1/categories/{category['id']}", headers=auth(),
                           json={"name": "Teas"})
    assert patched.status_code == 200 and patched.json()["name"] == "Teas"
    assert patched.json()["slug"] == "tea"

    listed = client.get("/v1/categories", headers=auth()).json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "Teas"

    deleted = client.delete(f"/v1/categories/{category['id']}", headers=auth())
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(client.get(f"/v1/categories/{category['id']}", headers=auth()), 404)


def test_duplicate_category_slug_is_409(client: Any, auth: Auth,
                                        seeded: dict[str, Any]) -> None:
    body = assert_problem(client.post("/v1/categories", headers=auth(),
                                      json={"slug": "coffee", "name": "More coffee"}), 409)
    assert "coffee" in body["detail"]
    assert_problem(client.patch(f"/v1/categories/{seeded['empty_category']['id']}",
                                headers=auth(), json={"slug": "coffee"}), 409)


def test_category_with_products_cannot_be_deleted(client: Any, auth: Auth,
                                                  seeded: dict[str, Any]) -> None:
    assert_problem(client.delete(f"/v1/categories/{seeded['category']['id']}", headers=auth()), 409)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/categories/999"), ("PATCH", "/v1/categories/999"),
    ("DELETE", "/v1/categories/999"), ("GET", "/v1/products/999"),
    ("PATCH", "/v1/products/999"), ("DELETE", "/v1/products/999"),
    ("GET", "/v1/products/999/stock"), ("PUT", "/v1/products/999/stock"),
    ("POST", "/v1/products/999/stock/adjustments"), ("GET", "/v1/reservations/nope"),
    ("POST", "/v1/reservations/nope/commit"), ("POST", "/v1/reservations/nope/release"),
])
def test_unknown_resources_are_404_problems(client: Any, auth: Auth, method: str,
                                            path: str) -> None:
    bodies = {"PATCH": {"name": "x"}, "PUT": {"on_hand": 1}, "POST": {"delta": 1}}
    headers = auth(**{"Idempotency-Key": "key-404-check"})
    kwargs: dict[str, Any] = {"headers": headers}
    if method in bodies and not path.endswith(("commit", "release")):
        kwargs["json"] = bodies[method]
    assert_problem(client.request(method, path, **kwargs), 404)


def test_category_pagination(client: Any, auth: Auth, service: CatalogService) -> None:
    for i in range(5):
        service.create_category(slug=f"c{i}", name=f"Category {i}")
    page = client.get("/v1/categories", headers=auth(), params={"page": 2, "page_size": 2})
    body = page.json()
    assert (body["page"], body["page_size"], body["total"]) == (2, 2, 5)
    assert [c["slug"] for c in body["items"]] == ["c2", "c3"]
    last = client.get("/v1/categories", headers=auth(), params={"page": 3, "page_size": 2})
    assert [c["slug"] for c in last.json()["items"]] == ["c4"]
    beyond = client.get("/v1/categories", headers=auth(), params={"page": 9, "page_size": 2})
    assert beyond.json()["items"] == [] and beyond.json()["total"] == 5


# products --------------------------------------------------------------------------
def test_product_lifecycle(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    category_id = seeded["category"]["id"]
    created = client.post("/v1/products", headers=auth(), json={
        "sku": "TEA-0001", "name": "Earl Grey 100 g", "description": "Bergamot",
        "category_id": category_id, "price": 690, "currency": "EUR"})
    assert created.status_code == 201, created.text
    product = created.json()
    assert created.headers["location"] == f"/v1/products/{product['id']}"
    assert product["active"] is True and product["price"] == 690
    assert product["currency"] == "EUR"

    assert client.get(f"/v1/products/{product['id']}", headers=auth()).json() == product
    stock = client.get(f"/v1/products/{product['id']}/stock", headers=auth()).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (0, 0, 0)

    patched = client.patch(f"/v1/products/{product['id']}", headers=auth(),
                           json={"price": 750, "active": False, "name": "Earl Grey"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["price"], patched.json()["active"]) == (750, False)
    assert patched.json()["sku"] == "TEA-0001"

    assert client.delete(f"/v1/products/{product['id']}", headers=auth()).status_code == 204
    assert_problem(client.get(f"/v1/products/{product['id']}", headers=auth()), 404)
    assert_problem(client.get(f"/v1/products/{product['id']}/stock", headers=auth()), 404)


def test_duplicate_sku_is_409(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    body = {"sku": "COF-0001", "name": "Clone", "category_id": seeded["category"]["id"],
            "price": 1, "currency": "EUR"}
    problem = assert_problem(client.post("/v1/products", headers=auth(), json=body), 409)
    assert "COF-0001" in problem["detail"]
    assert_problem(client.patch(f"/v1/products/{seeded['spare']['id']}", headers=auth(),
                                json={"sku": "COF-0001"}), 409)
    # Keeping one's own SKU is fine.
    same = client.patch(f"/v1/products/{seeded['product']['id']}", headers=auth(),
                        json={"sku": "COF-0001"})
    assert same.status_code == 200


def test_product_in_unknown_category_is_422(client: Any, auth: Auth,
                                            seeded: dict[str, Any]) -> None:
    body = {"sku": "NEW-0001", "name": "Orphan", "category_id": 999, "price": 1,
            "currency": "EUR"}
    assert_problem(client.post("/v1/products", headers=auth(), json=body), 422)
    assert_problem(client.patch(f"/v1/products/{seeded['product']['id']}", headers=auth(),
                                json={"category_id": 999}), 422)


def test_product_with_reserved_stock_cannot_be_deleted(client: Any, auth: Auth,
                                                       seeded: dict[str, Any]) -> None:
    assert_problem(client.delete(f"/v1/products/{seeded['held_product']['id']}",
                                 headers=auth()), 409)


def test_product_pagination(client: Any, auth: Auth, service: CatalogService) -> None:
    category = service.create_category(slug="bulk", name="Bulk")
    make_products(service, 25, category.id)
    first = client.get("/v1/products", headers=auth()).json()
    assert (first["page"], first["page_size"], first["total"]) == (1, 20, 25)
    assert len(first["items"]) == 20
    second = client.get("/v1/products", headers=auth(),
                        params={"page": 2, "page_size": 20}).json()
    assert [p["sku"] for p in second["items"]] == [f"SKU-{i:04d}" for i in range(21, 26)]
    full = client.get("/v1/products", headers=auth(), params={"page_size": 100}).json()
    assert len(full["items"]) == 25
    assert [p["id"] for p in full["items"]] == sorted(p["id"] for p in full["items"])


def test_product_filters(client: Any, auth: Auth, service: CatalogService) -> None:
    coffee = service.create_category(slug="coffee", name="Coffee").id
    tea = service.create_category(slug="tea", name="Tea").id

    def add(sku: str, name: str, category: int, price: int, stock: int,
            active: bool = True) -> int:
        pid = service.create_product(sku=sku, name=name, category_id=category, price=price,
                                     currency="EUR", active=active).id
        if stock:
            service.set_stock(pid, stock)
        return pid

    espresso = add("COF-1", "Espresso Blend", coffee, 2490, 10)
    decaf = add("COF-2", "Decaf Espresso", coffee, 1390, 0)
    earl = add("TEA-1", "Earl Grey", tea, 690, 5)
    green = add("TEA-2", "Green 100% Sencha", tea, 890, 3, active=False)

    def ids(**params: Any) -> list[int]:
        response = client.get("/v1/products", headers=auth(), params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return [p["id"] for p in body["items"]]

    assert ids(category=coffee) == [espresso, decaf]
    assert ids(q="espresso") == [espresso, decaf]
    assert ids(q="ESPRESSO", category=coffee, in_stock="true") == [espresso]
    assert ids(q="100%") == [green]  # LIKE wildcards are matched literally
    assert ids(q="%") == [green]
    assert ids(min_price=1000) == [espresso, decaf]
    assert ids(max_price=900) == [earl, green]
    assert ids(min_price=800, max_price=1500) == [decaf, green]
    assert ids(in_stock="false") == [decaf]
    assert ids(in_stock="true") == [espresso, earl, green]
    assert ids(active="false") == [green]
    assert ids(category=999) == []

    # A reservation of the last units takes a product out of "in stock".
    service.create_reservation("key-filter-01", "o-filter",
                               [{"product_id": earl, "quantity": 5}])
    assert ids(in_stock="true") == [espresso, green]
    assert ids(in_stock="false") == [decaf, earl]


# stock -----------------------------------------------------------------------------
def test_set_and_adjust_stock(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    stock = client.get(f"/v1/products/{held}/stock", headers=auth()).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 2, 8)

    put = client.put(f"/v1/products/{held}/stock", headers=auth(), json={"on_hand": 20})
    assert put.status_code == 200, put.text
    assert (put.json()["on_hand"], put.json()["available"]) == (20, 18)

    adjusted = client.post(f"/v1/products/{held}/stock/adjustments", headers=auth(),
                           json={"delta": -5, "reason": "broken in transit"})
    assert adjusted.status_code == 200, adjusted.text
    assert (adjusted.json()["on_hand"], adjusted.json()["reserved"]) == (15, 2)

    # on_hand may never drop below what is reserved.
    assert_problem(client.put(f"/v1/products/{held}/stock", headers=auth(),
                              json={"on_hand": 1}), 422)
    assert_problem(client.post(f"/v1/products/{held}/stock/adjustments", headers=auth(),
                               json={"delta": -14}), 422)
    # Receipts beyond the per-product ceiling are refused, not a database overflow.
    assert client.put(f"/v1/products/{held}/stock", headers=auth(),
                      json={"on_hand": 1_000_000_000}).status_code == 200
    assert_problem(client.post(f"/v1/products/{held}/stock/adjustments", headers=auth(),
                               json={"delta": 1_000_000_000}), 422)
    assert client.put(f"/v1/products/{held}/stock", headers=auth(),
                      json={"on_hand": 15}).status_code == 200
    assert client.get(f"/v1/products/{held}/stock", headers=auth()).json()["on_hand"] == 15


# reservations ----------------------------------------------------------------------
def reserve(client: Any, auth: Auth, order_id: str, items: list[tuple[int, int]],
            key: str | None = None) -> Any:
    return client.post("/v1/reservations",
                       headers=auth(**{"Idempotency-Key": key or f"key-{order_id}"}),
                       json={"order_id": order_id,
                             "items": [{"product_id": p, "quantity": q} for p, q in items]})


def stock_of(client: Any, auth: Auth, product_id: int) -> tuple[int, int, int]:
    s = client.get(f"/v1/products/{product_id}/stock", headers=auth()).json()
    return s["on_hand"], s["reserved"], s["available"]


def test_reserve_then_commit(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    p, spare = seeded["product"]["id"], seeded["spare"]["id"]
    created = reserve(client, auth, "order-1", [(spare, 2), (p, 3)])
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == "/v1/reservations/order-1"
    assert body["status"] == "held"
    assert body["items"] == [{"product_id": p, "quantity": 3},
                             {"product_id": spare, "quantity": 2}]
    assert stock_of(client, auth, p) == (10, 3, 7)
    assert stock_of(client, auth, spare) == (5, 2, 3)

    got = client.get("/v1/reservations/order-1", headers=auth())
    assert got.status_code == 200 and got.json() == body

    committed = client.post("/v1/reservations/order-1/commit",
                            headers=auth(**{"Idempotency-Key": "commit-order-1"}))
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    assert stock_of(client, auth, p) == (7, 0, 7)
    assert stock_of(client, auth, spare) == (3, 0, 3)

    # Committing again (new key) changes nothing; releasing a committed one is 409.
    again = client.post("/v1/reservations/order-1/commit",
                        headers=auth(**{"Idempotency-Key": "commit-order-1b"}))
    assert again.status_code == 200 and again.json()["status"] == "committed"
    assert stock_of(client, auth, p) == (7, 0, 7)
    assert_problem(client.post("/v1/reservations/order-1/release",
                               headers=auth(**{"Idempotency-Key": "release-order-1"})), 409)
    assert stock_of(client, auth, p) == (7, 0, 7)


def test_reserve_then_release(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    assert stock_of(client, auth, held) == (10, 2, 8)
    released = client.post("/v1/reservations/order-held/release",
                           headers=auth(**{"Idempotency-Key": "release-held"}))
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert stock_of(client, auth, held) == (10, 0, 10)
    body = assert_problem(client.post("/v1/reservations/order-held/commit",
                                      headers=auth(**{"Idempotency-Key": "commit-held"})), 409)
    assert "released" in body["detail"]
    assert stock_of(client, auth, held) == (10, 0, 10)


def test_reservation_is_all_or_nothing(client: Any, auth: Auth,
                                       seeded: dict[str, Any]) -> None:
    p, spare = seeded["product"]["id"], seeded["spare"]["id"]
    body = assert_problem(reserve(client, auth, "order-big", [(p, 1), (spare, 6)]), 409)
    assert body["product_id"] == spare
    assert body["shortages"] == [{"product_id": spare, "requested": 6, "available": 5}]
    assert stock_of(client, auth, p) == (10, 0, 10)
    assert stock_of(client, auth, spare) == (5, 0, 5)
    assert_problem(client.get("/v1/reservations/order-big", headers=auth()), 404)
    # The same order can then be reserved with what is there.
    assert reserve(client, auth, "order-big", [(p, 1), (spare, 5)],
                   key="key-order-big-2").status_code == 201
    assert stock_of(client, auth, spare) == (5, 5, 0)


def test_reservation_of_unknown_or_inactive_product_is_422(
        client: Any, auth: Auth, seeded: dict[str, Any], service: CatalogService) -> None:
    p = seeded["product"]["id"]
    body = assert_problem(reserve(client, auth, "order-x", [(p, 1), (999, 1)]), 422)
    assert body["product_id"] == 999
    service.update_product(seeded["spare"]["id"], active=False)
    assert_problem(reserve(client, auth, "order-y", [(seeded["spare"]["id"], 1)]), 422)
    assert stock_of(client, auth, p) == (10, 0, 10)


def test_duplicate_product_in_items_is_422(client: Any, auth: Auth,
                                           seeded: dict[str, Any]) -> None:
    p = seeded["product"]["id"]
    assert_problem(reserve(client, auth, "order-dup", [(p, 1), (p, 2)]), 422)
    assert stock_of(client, auth, p) == (10, 0, 10)


def test_second_reservation_for_same_order_is_409(client: Any, auth: Auth,
                                                  seeded: dict[str, Any]) -> None:
    p = seeded["product"]["id"]
    assert_problem(reserve(client, auth, "order-held", [(p, 1)], key="another-key-1"), 409)
    assert stock_of(client, auth, p) == (10, 0, 10)


def test_health_and_openapi(client: Any) -> None:
    assert client.get("/health/live").json()["service"] == "catalog"
    assert client.get("/health/ready").status_code == 200
    spec = client.get("/v1/openapi.json").json()
    assert spec["info"]["x-owner"] == "team-catalog"


@pytest.mark.postgres
def test_main_flows_on_postgres(postgres_url: str, tokens: TokenFactory, auth: Auth,
                                migrated_db: Callable[[str, str], Database],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    db = migrated_db("catalog", postgres_url)
    app = create_app(db=db, verifier=tokens.verifier())
    seeded = seed_small(app.app.extensions["charter"].deps["catalog"])
    spare_id = seeded["spare"]["id"]
    with app.test_client() as client:
        found = client.get("/v1/products", headers=auth(),
                           params={"q": "ESPRESSO", "in_stock": "true", "max_price": 2490})
        assert [p["id"] for p in found.json()["items"]] == [seeded["product"]["id"]]
        pricey = client.patch(f"/v1/products/{seeded['product']['id']}", headers=auth(),
                              json={"price": 100_000_000_000})
        assert pricey.status_code == 200 and pricey.json()["price"] == 100_000_000_000
        big = client.post(f"/v1/products/{spare_id}/stock/adjustments", headers=auth(),
                          json={"delta": 1_000_000_000})
        assert_problem(big, 422)
        assert_problem(client.post("/v1/products", headers=auth(), json={
                "sku": "COF-0001", "name": "Clone", "category_id": seeded["category"]["id"],
                "price": 1, "currency": "EUR"}), 409)
        spare = seeded["spare"]["id"]
        assert reserve(client, auth, "pg-order", [(spare, 5)]).status_code == 201
        assert reserve(client, auth, "pg-order", [(spare, 5)]).headers[
            "idempotent-replayed"] == "true"
        assert_problem(reserve(client, auth, "pg-order-2", [(spare, 1)]), 409)
        committed = client.post("/v1/reservations/pg-order/commit",
                                headers=auth(**{"Idempotency-Key": "pg-commit-1"}))
        assert committed.status_code == 200
        assert stock_of(client, auth, spare) == (0, 0, 0)
        assert_problem(client.delete(f"/v1/categories/{seeded['category']['id']}",
                                     headers=auth()), 409)
