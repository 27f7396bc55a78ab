"""The cart talking to a catalog: degraded reads, 503 writes, and the real HTTP adapter.

The HTTP tests run a tiny real HTTP server on 127.0.0.1 (random port) standing in for
the catalog API: it checks the bearer token like catalog would, records the headers it
received and can be made slow or broken.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from cart_fakes import InMemoryCatalog

from charter.config import ConfigError
from charter.db import Database
from charter.security.tokens import InvalidToken, scopes_of
from charter.testing import TokenFactory
from services.cart.app import create_app
from services.cart.settings import CartConfig
from services.catalog_client.client import HttpCatalogClient
from services.catalog_client.models import CatalogUnavailable
from tests.support.plugin import Seen, StubServer, assert_problem, bearer, free_port

PRODUCTS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "sku": "COF-0001", "name": "Espresso beans 1 kg", "price": 1299,
        "currency": "EUR", "active": True, "description": "", "category_id": 1,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
    2: {"id": 2, "sku": "GRI-0001", "name": "Grinder", "price": 4999,
        "currency": "EUR", "active": True, "description": "", "category_id": 1,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
}
STOCK = {1: 10, 2: 1}
PATH = re.compile(r"^/v1/products/(\d+)(/stock)?$")


def catalog_responder(tokens: TokenFactory) -> Any:
    verifier = tokens.verifier()

    def respond(seen: Seen) -> tuple[int, Any]:
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 401, {"title": "Unauthorized", "status": 401}
        try:
            claims = verifier.verify(auth.removeprefix("Bearer "))
        except InvalidToken:
            return 401, {"title": "Unauthorized", "status": 401}
        if "catalog:read" not in scopes_of(claims):
            return 403, {"title": "Forbidden", "status": 403}
        match = PATH.match(seen.path)
        if seen.method != "GET" or not match or int(match[1]) not in PRODUCTS:
            return 404, {"title": "Not Found", "status": 404}
        pid = int(match[1])
        if match[2]:
            return 200, {"product_id": pid, "on_hand": STOCK[pid], "reserved": 0,
                         "available": STOCK[pid], "updated_at": "2026-01-01T00:00:00Z"}
        return 200, PRODUCTS[pid]

    return respond


@pytest.fixture
def stub(tokens: TokenFactory, stub_server: Callable[..., StubServer]) -> StubServer:
    return stub_server(catalog_responder(tokens))


def http_app(db: Database, tokens: TokenFactory, url: str, timeout: float = 2.0) -> Any:
    catalog = HttpCatalogClient(
        url, lambda: tokens.token(sub="cart", scope="catalog:read"), timeout=timeout
    )
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog)


def add(client: Any, headers: dict[str, str], product_id: int = 1, quantity: int = 1) -> Any:
    return client.post(
        "/v1/cart/items", json={"product_id": product_id, "quantity": quantity}, headers=headers
    )


# -- fake catalog down ---------------------------------------------------------------------


def test_read_with_catalog_down_returns_last_known_prices_as_stale(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    add(client, auth(), 1, 2)
    add(client, auth(), 2, 1)
    catalog.down = True
    r = client.get("/v1/cart", headers=auth())
    assert r.status_code == 200
    body = r.json()
    assert body["pricing"] == "stale"
    lines = [(i["unit_price"], i["availability"], i["available_quantity"]) for i in body["items"]]
    assert lines == [(1299, "unknown", None), (4999, "unknown", None)]
    assert body["total"] == 2 * 1299 + 4999


def test_read_stops_asking_a_failing_catalog(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    for pid in (1, 2):
        add(client, auth(), pid)
    catalog.down = True
    catalog.calls.clear()
    client.get("/v1/cart", headers=auth())
    assert len(catalog.calls) == 1


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/v1/cart/items", {"product_id": 1, "quantity": 1}),
        ("POST", "/v1/cart/items", {"product_id": 2, "quantity": 1}),
        ("PUT", "/v1/cart/items/1", {"quantity": 5}),
    ],
)
def test_writes_needing_the_catalog_are_503_when_it_is_down(
    client: Any, auth: Any, catalog: InMemoryCatalog, method: str, url: str, body: Any
) -> None:
    add(client, auth(), 1, 2)
    catalog.down = True
    r = client.request(method, url, json=body, headers=auth())
    assert_problem(r, 503)
    catalog.down = False
    items = client.get("/v1/cart", headers=auth()).json()["items"]
    assert [(i["product_id"], i["quantity"]) for i in items] == [(1, 2)]


def test_writes_not_needing_the_catalog_work_while_it_is_down(
    client: Any, auth: Any, catalog: InMemoryCatalog
) -> None:
    add(client, auth(), 1, 5)
    add(client, auth(), 2, 1)
    catalog.down = True
    r = client.put("/v1/cart/items/1", json={"quantity": 2}, headers=auth())
    assert r.status_code == 200
    assert r.json()["pricing"] == "stale"
    assert client.delete("/v1/cart/items/2", headers=auth()).status_code == 204
    assert client.delete("/v1/cart", headers=auth()).status_code == 204


def test_catalog_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALOG_TIMEOUT", raising=False)
    assert CartConfig.parse().catalog_timeout == 2.0
    monkeypatch.setenv("CATALOG_TIMEOUT", "0.25")
    assert CartConfig.parse().catalog_timeout == 0.25
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("CATALOG_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="CATALOG_TIMEOUT"):
            CartConfig.parse()


# -- the real HTTP adapter -------------------------------------------------------------------


def test_http_adapter_sends_token_and_correlation_id(
    db: Database, tokens: TokenFactory, stub: StubServer, auth: Any
) -> None:
    with http_app(db, tokens, stub.url).test_client() as client:
        headers = {**auth(), "X-Correlation-Id": "cid-cart-test-1"}
        r = add(client, headers, 1, 2)
        assert r.status_code == 201, r.text
        assert r.headers["x-correlation-id"] == "cid-cart-test-1"
        item = r.json()["items"][0]
        assert (item["sku"], item["name"], item["unit_price"], item["available_quantity"]) == (
            "COF-0001", "Espresso beans 1 kg", 1299, 10,
        )
        assert r.json()["pricing"] == "current"
    assert stub.seen, "the catalog was never called"
    assert {s.path for s in stub.seen} == {"/v1/products/1", "/v1/products/1/stock"}
    for seen in stub.seen:
        assert seen.method == "GET"
        assert seen.headers["x-correlation-id"] == "cid-cart-test-1"
        claims = tokens.verifier().verify(seen.headers["authorization"].removeprefix("Bearer "))
        assert claims["sub"] == "cart"
        assert "catalog:read" in scopes_of(claims)
        # The caller's own token is never forwarded to the catalog.
        assert seen.headers["authorization"] != auth()["Authorization"]


def test_http_adapter_maps_catalog_answers(
    db: Database, tokens: TokenFactory, stub: StubServer, auth: Any
) -> None:
    with http_app(db, tokens, stub.url).test_client() as client:
        assert add(client, auth(), 404).status_code == 404
        assert add(client, auth(), 2, 2).status_code == 409  # 1 available
        assert add(client, auth(), 2, 1).status_code == 201


def test_http_adapter_refused_token_is_503_not_a_leak(
    db: Database, tokens: TokenFactory, stub: StubServer, auth: Any
) -> None:
    catalog = HttpCatalogClient(stub.url, lambda: tokens.token(scope="cart:read"))
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog)
    with app.test_client() as client:
        r = add(client, auth(), 1)
        assert_problem(r, 503)


def test_catalog_connection_refused_is_fast(
    db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, auth: Any
) -> None:
    with create_app(db=db, verifier=tokens.verifier(), catalog=catalog).test_client() as c:
        add(c, auth(), 1, 2)  # priced while the (fake) catalog was up
    dead = f"http://127.0.0.1:{free_port()}"
    with http_app(db, tokens, dead).test_client() as client:
        started = time.monotonic()
        r = add(client, auth(), 1)
        assert_problem(r, 503)
        r = client.get("/v1/cart", headers=auth())
        assert r.status_code == 200
        assert r.json()["pricing"] == "stale"
        assert r.json()["items"][0]["unit_price"] == 1299
        assert time.monotonic() - started < 2.0


def test_slow_catalog_times_out_reads_degrade_and_writes_are_503(
    db: Database, tokens: TokenFactory, stub: StubServer, auth: Any
) -> None:
    timeout = 0.5
    with http_app(db, tokens, stub.url, timeout=timeout).test_client() as client:
        assert add(client, auth(), 1, 2).status_code == 201
        stub.set_delay(5.0)  # far beyond the timeout: it would hang without one

        started = time.monotonic()
        r = client.get("/v1/cart", headers=auth())
        elapsed = time.monotonic() - started
        assert r.status_code == 200
        assert r.json()["pricing"] == "stale"
        assert r.json()["items"][0]["unit_price"] == 1299
        assert elapsed < timeout + 1.0, elapsed

        started = time.monotonic()
        r = add(client, auth(), 2)
        elapsed = time.monotonic() - started
        assert_problem(r, 503)
        assert elapsed < timeout + 1.0, elapsed


def test_catalog_5xx_is_treated_as_unavailable(
    tokens: TokenFactory, stub_server: Callable[..., StubServer]
) -> None:
    server = stub_server(lambda seen: (500, {"title": "boom", "status": 500}))
    client = HttpCatalogClient(server.url, lambda: tokens.token(scope="catalog:read"))
    with pytest.raises(CatalogUnavailable):
        client.get_product(1)
    client.close()


def test_catalog_garbage_is_treated_as_unavailable(
    tokens: TokenFactory, stub_server: Callable[..., StubServer]
) -> None:
    server = stub_server(lambda seen: (200, {"unexpected": True}))
    client = HttpCatalogClient(server.url, lambda: tokens.token(scope="catalog:read"))
    with pytest.raises(CatalogUnavailable):
        client.get_product(1)
    with pytest.raises(CatalogUnavailable):
        client.get_stock(1)
    client.close()


def test_staff_read_goes_through_the_same_pricing(
    db: Database, tokens: TokenFactory, stub: StubServer, auth: Any
) -> None:
    with http_app(db, tokens, stub.url).test_client() as client:
        add(client, auth("bob"), 1, 1)
        r = client.get("/v1/carts/bob", headers=bearer(
            tokens.token(sub="carol", scope="cart:read", role="staff")
        ))
        assert r.status_code == 200
        assert r.json()["items"][0]["unit_price"] == 1299
