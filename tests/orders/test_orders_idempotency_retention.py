"""Orders' Idempotency-Key on placing an order: replayed within the retention, a new
order after it (docs/architecture.md, "Idempotency keys")."""

from __future__ import annotations

from datetime import datetime, timedelta

from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import Auth, place

from charter.db import Database, utcnow
from charter.idempotency import retention_from_env
from charter.testing import TokenFactory
from services.orders.app import create_app

ITEMS = {"items": [{"product_id": 1, "quantity": 1}]}


def test_a_key_replays_until_it_expires_then_places_a_new_order(
    db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
    payments: InMemoryPayments, auth: Auth,
) -> None:
    now: list[datetime] = [utcnow()]
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                     payments=payments,
                     clock=lambda: now[0])
    with app.test_client() as client:
        first = place(client, auth(), ITEMS, key="retention-key-1")
        assert first.status_code == 201, first.text
        now[0] += retention_from_env() - timedelta(seconds=1)
        replay = place(client, auth(), ITEMS, key="retention-key-1")
        assert replay.json()["id"] == first.json()["id"]
        now[0] += timedelta(seconds=2)  # just past the retention
        later = place(client, auth(), ITEMS, key="retention-key-1")
        assert later.status_code == 201, later.text
        assert later.json()["id"] != first.json()["id"]
