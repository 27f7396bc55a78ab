"""Orders against the real catalog service (seeded demo data), served by uvicorn on
127.0.0.1 in a thread over plain HTTP: placing reserves real stock, cancelling gives it
back, confirming commits it, a shortage reserves nothing, and a catalog outage leaves a
pending order that recovery reserves exactly once when the catalog is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from orders_fakes import InMemoryCart, InMemoryPayments
from orders_support import cancel, confirm, payment_for, place

from charter.db import Database
from charter.testing import TokenFactory
from services.catalog import app as catalog_app
from services.catalog import seed as catalog_seed
from services.catalog_client.client import HttpCatalogClient
from services.orders.app import create_app, order_service
from tests.support.plugin import ThreadServer, assert_problem, bearer, serve


class RunningCatalog:
    """The catalog app under uvicorn in a thread; :meth:`stop` then :meth:`start` is an
    outage, the catalog coming back on the same port."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = serve(app)
        self.port = self.server.port
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = ThreadServer(self.app, port=self.port).start()


@pytest.fixture
def real_catalog(tmp_path: Path, tokens: TokenFactory,
                 migrated_db: Callable[[str, str], Database],
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningCatalog]:
    monkeypatch.setenv("CHARTER_MTLS", "0")  # plain HTTP between the two in this test
    db = migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog_seed.seed(db)
    running = RunningCatalog(catalog_app.create_app(db=db, verifier=tokens.verifier()))
    yield running
    running.stop()


def stock(catalog: RunningCatalog, tokens: TokenFactory, product_id: int) -> dict[str, int]:
    headers = bearer(tokens.token(sub="staff-1", scope="catalog:read", role="staff"))
    r = httpx.get(f"{catalog.url}/v1/products/{product_id}/stock", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_orders_with_the_real_catalog(real_catalog: RunningCatalog, db: Any,
                                      tokens: TokenFactory) -> None:
    read_token = tokens.token(sub="orders", scope="catalog:read", role="service")
    reserve_token = tokens.token(sub="orders", scope="catalog:reserve",
                                 role="service")
    catalog = HttpCatalogClient(real_catalog.url, lambda: read_token, lambda: reserve_token,
                          timeout=2.0)
    payments = InMemoryPayments()
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=InMemoryCart(),
                     payments=payments)
    alice = bearer(tokens.token(sub="alice", scope="orders:read orders:write",
                                role="customer", email="alice@example.com"))
    before = stock(real_catalog, tokens, 1)
    with app.test_client() as client:
        # Place: real stock is reserved, priced from the real product.
        r = place(client, alice, {"items": [{"product_id": 1, "quantity": 3}]})
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["status"] == "reserved"
        assert order["items"][0]["sku"] == "COF-0001"
        assert order["items"][0]["unit_price"] == 2490 and order["total"] == 3 * 2490
        after = stock(real_catalog, tokens, 1)
        assert after["reserved"] == before["reserved"] + 3
        assert after["available"] == before["available"] - 3

        # Cancel: the reservation is released in the catalog.
        r = cancel(client, alice, order["id"])
        assert r.status_code == 200 and r.json()["release_status"] == "done", r.text
        released = stock(real_catalog, tokens, 1)
        assert (released["reserved"], released["available"]) == (
            before["reserved"], before["available"])

        # Shortage: 409 with the real catalog's shortages, nothing held.
        available = stock(real_catalog, tokens, 2)["available"]
        r = place(client, alice, {"items": [{"product_id": 1, "quantity": 1},
                                            {"product_id": 2, "quantity": available + 1}]})
        problem = assert_problem(r, 409)
        assert problem["shortages"] == [
            {"product_id": 2, "requested": available + 1, "available": available}]
        assert stock(real_catalog, tokens, 1)["reserved"] == before["reserved"]

        # Confirm: the reservation is committed (on_hand goes down).
        r = place(client, alice, {"items": [{"product_id": 1, "quantity": 2}]})
        order = r.json()
        pay = payments.put(payment_for(order))
        r = confirm(client, alice, order["id"], pay.id)
        assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
        committed = stock(real_catalog, tokens, 1)
        assert committed["on_hand"] == before["on_hand"] - 2
        assert committed["reserved"] == before["reserved"]

        # Catalog down while pricing: 503 and nothing stored.
        real_catalog.stop()
        started = time.monotonic()
        r = place(client, alice, {"items": [{"product_id": 1, "quantity": 1}]})
        assert r.status_code == 503, r.text  # pricing needs the catalog: nothing stored
        assert time.monotonic() - started < 6
        real_catalog.start()

        # Catalog down while reserving: 202 pending; back up: recovery reserves once.
        service = order_service(app)
        real_reserve = catalog.reserve
        calls: list[str] = []

        def reserve_with_outage(order_id: str, items: Any, key: str) -> Any:
            calls.append(key)
            if len(calls) == 1:
                real_catalog.stop()
                try:
                    return real_reserve(order_id, items, key)
                finally:
                    real_catalog.start()
            return real_reserve(order_id, items, key)

        catalog.reserve = reserve_with_outage  # type: ignore[method-assign]
        r = place(client, alice, {"items": [{"product_id": 1, "quantity": 1}]})
        assert r.status_code == 202, r.text
        pending = r.json()
        assert pending["status"] == "pending"
        level = stock(real_catalog, tokens, 1)
        assert level["reserved"] == before["reserved"]
        assert service.resume_pending() == {"reservation:reserved": 1}
        assert service.resume_pending() == {}
        assert calls == [f"order-{pending['id']}-reserve"] * 2
        assert stock(real_catalog, tokens, 1)["reserved"] == before["reserved"] + 1
        reservation = httpx.get(
            f"{real_catalog.url}/v1/reservations/{pending['id']}",
            headers=bearer(reserve_token), timeout=5)
        assert reservation.json()["status"] == "held"
    catalog.close()
