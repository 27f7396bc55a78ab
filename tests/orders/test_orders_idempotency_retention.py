"""Orders' Idempotency-Key on placing an order: replayed within the retention, a new
order after it (docs/architecture.md, "Idempotency keys")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orders_support import Auth, place

from charter.db import utcnow
from services.orders.services import OrderService

ITEMS = {"items": [{"product_id": 1, "quantity": 1}]}


def test_a_key_replays_until_it_expires_then_places_a_new_order(
    client: Any, auth: Auth, service: OrderService
) -> None:
    first = place(client, auth(), ITEMS, key="retention-key-1")
    assert first.status_code == 201, first.text
    replay = place(client, auth(), ITEMS, key="retention-key-1")
    assert replay.json()["id"] == first.json()["id"]
    service.idempotency.clock = lambda: utcnow() + service.idempotency.retention + timedelta(
        seconds=1)
    later = place(client, auth(), ITEMS, key="retention-key-1")
    assert later.status_code == 201, later.text
    assert later.json()["id"] != first.json()["id"]
