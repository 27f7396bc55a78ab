"""Helpers of the orders tests: idempotency keys, payments, and calls that read like the API.

Shared helpers (``bearer``, ``assert_problem``, ``StubServer``…) come from the plugin:
``from tests.support.plugin import …`` (docs/testing.md).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

from charter.clock import utcnow
from charter.db import Database
from charter.messaging.envelope import Envelope
from services.orders.messaging import OrderReplies
from services.orders.ports import Payment
from services.orders.store import outbox

Auth = Callable[..., dict[str, str]]  # the ``auth`` fixture: auth("alice", role=...) → headers
_keys = itertools.count(1)


def new_key(prefix: str = "test-key") -> str:
    """A fresh Idempotency-Key (8..128 characters of the allowed alphabet)."""
    return f"{prefix}-{next(_keys):06d}-{uuid.uuid4().hex[:8]}"


def keyed(headers: dict[str, str], key: str | None = None) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key or new_key()}


def place(client: Any, headers: dict[str, str], body: dict[str, Any],
          key: str | None = None) -> Any:
    return client.post("/v1/orders", json=body, headers=keyed(headers, key))


def place_pending(client: Any, headers: dict[str, str], body: dict[str, Any],
                  catalog: Any, key: str | None = None) -> dict[str, Any]:
    """Place while ``catalog`` (an in-memory fake) refuses reservations: a ``202`` pending
    order (returned as its document); reservations work again afterwards."""
    catalog.reservations_down = True
    try:
        response = place(client, headers, body, key)
    finally:
        catalog.reservations_down = False
    assert response.status_code == 202, response.text
    order: dict[str, Any] = response.json()
    assert order["status"] == "pending"
    return order


def cancel(client: Any, headers: dict[str, str], order_id: str, key: str | None = None) -> Any:
    return client.post(f"/v1/orders/{order_id}/cancel", headers=keyed(headers, key))


def confirm(client: Any, headers: dict[str, str], order_id: str, payment_id: str,
            key: str | None = None) -> Any:
    return client.post(f"/v1/orders/{order_id}/confirm", json={"payment_id": payment_id},
                       headers=keyed(headers, key))


def payment_id() -> str:
    return "pay_" + uuid.uuid4().hex


def payment_for(order: dict[str, Any], status: str = "authorized", **changes: Any) -> Payment:
    """A payment matching ``order`` (an order document), with ``changes`` applied."""
    values: dict[str, Any] = {
        "id": payment_id(),
        "order_id": order["id"],
        "customer_id": order["customer_id"],
        "amount": order["total"],
        "currency": order["currency"],
        "status": status,
    }
    values.update(changes)
    return Payment(**values)


def participants_reply(db: Database, *, loyalty: bool = True,
                       notifications: bool = True) -> list[Envelope]:
    """Play loyalty and notifications for the events waiting in orders' outbox: their
    replies (``PointsAwarded``, ``NotificationSent``, ``AwardReversed``) go through
    orders' real reply handler; the events are marked sent. Returns the events seen."""
    handler = OrderReplies(db)
    with db.write() as session:
        rows = outbox.pending(session, 1000)
        outbox.mark_sent(session, [r.position for r in rows], utcnow())
    events = [r.envelope() for r in rows]
    for event in events:
        order_id, customer = event.data["order_id"], event.data["customer_id"]
        points = int(event.data["total"]["amount_minor"]) // 100
        if event.type == "OrderConfirmed":
            if loyalty:
                handler(event.caused("PointsAwarded", {"order_id": order_id,
                                                       "customer_id": customer,
                                                       "points": points}, source="loyalty"))
            if notifications:
                handler(event.caused("NotificationSent", {
                    "notification_id": str(uuid.uuid4()), "kind": "order_confirmed",
                    "order_id": order_id}, source="notifications"))
        elif event.type == "OrderCancelled" and event.data["after_confirmation"] and loyalty:
            handler(event.caused("AwardReversed", {"order_id": order_id,
                                                   "customer_id": customer,
                                                   "points": points}, source="loyalty"))
    return events
