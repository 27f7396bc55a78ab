"""The cart against the real catalog service, served by uvicorn on 127.0.0.1 in a thread.

Both apps verify tokens minted by the same :class:`TokenFactory`; the cart calls the
catalog with its own ``catalog:read`` token (never the customer's), and the correlation
id of the customer's request reaches the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.db import Database
from charter.testing import TokenFactory
from services.cart.app import create_app
from services.catalog import app as catalog_app
from services.catalog_client.client import HttpCatalogClient
from tests.support.plugin import HeaderRecorder, ThreadServer, bearer


@dataclass
class RunningCatalog:
    """The catalog app behind a :class:`HeaderRecorder`, served by uvicorn in a thread."""

    recorder: HeaderRecorder
    server: ThreadServer

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def real_catalog(tmp_path: Path, tokens: TokenFactory,
                 migrated_db: Callable[[str, str], Database],
                 asgi_server: Callable[..., ThreadServer]) -> RunningCatalog:
    db = migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")
    recorder = HeaderRecorder(catalog_app.create_app(db=db, verifier=tokens.verifier()))
    return RunningCatalog(recorder, asgi_server(recorder))


def seed(catalog_url: str, tokens: TokenFactory) -> dict[str, int]:
    """A category and two products with stock, created through the catalog API."""
    headers = bearer(tokens.token(sub="staff-1", scope="catalog:read catalog:write"))
    with httpx.Client(base_url=catalog_url, headers=headers, timeout=5) as http:
        category = http.post("/v1/categories", json={"slug": "coffee", "name": "Coffee"})
        assert category.status_code == 201, category.text
        ids: dict[str, int] = {}
        for sku, name, price, on_hand in (
            ("COF-0001", "Espresso beans 1 kg", 1299, 10),
            ("GRI-0001", "Grinder", 4999, 1),
        ):
            product = http.post("/v1/products", json={
                "sku": sku, "name": name, "price": price, "currency": "EUR",
                "category_id": category.json()["id"],
            })
            assert product.status_code == 201, product.text
            pid = product.json()["id"]
            stock = http.put(f"/v1/products/{pid}/stock", json={"on_hand": on_hand})
            assert stock.status_code == 200, stock.text
            ids[sku] = pid
    return ids


def test_cart_with_the_real_catalog(
    real_catalog: RunningCatalog, db: Database, tokens: TokenFactory, auth: Any
) -> None:
    ids = seed(real_catalog.url, tokens)
    beans, grinder = ids["COF-0001"], ids["GRI-0001"]
    internal = tokens.token(sub="cart", scope="catalog:read")
    catalog = HttpCatalogClient(real_catalog.url, lambda: internal, timeout=2.0)
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog)
    real_catalog.recorder.seen.clear()
    with app.test_client() as client:
        headers = {**auth("alice"), "X-Correlation-Id": "cid-real-catalog-1"}
        r = client.post("/v1/cart/items", json={"product_id": beans, "quantity": 2},
                        headers=headers)
        assert r.status_code == 201, r.text
        item = r.json()["items"][0]
        assert (item["sku"], item["name"], item["unit_price"], item["currency"]) == (
            "COF-0001", "Espresso beans 1 kg", 1299, "EUR",
        )
        assert (item["availability"], item["available_quantity"]) == ("in_stock", 10)

        seen = [s for s in real_catalog.recorder.seen if s[":path"].startswith("/v1/products")]
        assert seen, "the catalog was never called"
        for request in seen:
            assert request["authorization"] == f"Bearer {internal}"
            assert request["x-correlation-id"] == "cid-real-catalog-1"

        r = client.post("/v1/cart/items", json={"product_id": grinder, "quantity": 2},
                        headers=auth("alice"))
        assert r.status_code == 409, r.text  # only 1 on hand
        r = client.post("/v1/cart/items", json={"product_id": 999_999, "quantity": 1},
                        headers=auth("alice"))
        assert r.status_code == 404, r.text

        staff = bearer(tokens.token(sub="staff-1", scope="catalog:read catalog:write"))
        changed = httpx.patch(f"{real_catalog.url}/v1/products/{beans}",
                              json={"price": 1499}, headers=staff, timeout=5)
        assert changed.status_code == 200, changed.text
        body = client.get("/v1/cart", headers=auth("alice")).json()
        assert body["pricing"] == "current"
        assert body["items"][0]["unit_price"] == 1499
        assert body["total"] == 2 * 1499

        real_catalog.stop()
        started = time.monotonic()
        body = client.get("/v1/cart", headers=auth("alice")).json()
        assert body["pricing"] == "stale"
        assert body["items"][0]["unit_price"] == 1499
        r = client.post("/v1/cart/items", json={"product_id": grinder, "quantity": 1},
                        headers=auth("alice"))
        assert r.status_code == 503
        assert time.monotonic() - started < 4.0
    catalog.close()
