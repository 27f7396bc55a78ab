"""The events each producer really publishes, from its own code, one named scenario each.

A scenario calls the producer function the platform agreed on (no broker, no database)
and returns the :class:`Envelope` it would publish:

- orders: ``services.orders.store.integration_events(order, events)``
- auth: ``auth.events.user_registered(user_id, role)``
- catalog: ``services.catalog.events.stock_changed(product_id, on_hand, reserved, reason)``
  and ``services.catalog.events.low_stock(product_id, available, threshold)``
- loyalty: ``services.loyalty.events.points_awarded(order_id, customer_id, points)`` and
  ``services.loyalty.events.award_reversed(order_id, customer_id, points)``
- notifications:
  ``services.notifications.events.notification_sent(notification_id, kind, order_id)``

A function that does not exist raises :class:`ProducerMissing`, so the message-pact
verification and the schema tests FAIL (never skip) until the producer is written.
Scenario names are the descriptions of the message-pact interactions
(``tests/contracts/consumer/messages.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from charter.messaging.envelope import Envelope

ORDER_ID = "3f2b8c1e-5d4a-4e6b-9c7d-1a2b3c4d5e6f"
NOTIFICATION_ID = "8d6e2f4a-1b3c-4d5e-8f9a-0b1c2d3e4f5a"
CUSTOMER = "alice"
PAYMENT_ID = "pay_0123456789abcdef0123456789abcdef"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class ProducerMissing(AssertionError):
    """The agreed producer function does not exist (yet)."""


def producer(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, or :class:`ProducerMissing` naming what is expected."""
    try:
        found = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        raise ProducerMissing(f"producer {module}.{name} is missing: module {module} does "
                              "not exist (the agreed producer function, see "
                              "tests/contracts/producers.py)") from None
    except AttributeError:
        raise ProducerMissing(f"producer {module}.{name} is missing: {module} has no "
                              f"{name} (the agreed producer function)") from None
    if not callable(found):
        raise ProducerMissing(f"{module}.{name} is not a function")
    return found  # type: ignore[no-any-return]


def _order_events(*, refunded: bool) -> list[Envelope]:
    """An order placed, reserved, paid and confirmed (then refunded and cancelled), through
    the aggregate; the integration events orders' store derives from its new events."""
    from services.orders.domain import Order, OrderLine, RejectionCode

    integration_events = producer("services.orders.store", "integration_events")
    order = Order.place(ORDER_ID, CUSTOMER, [
        OrderLine(1, "COF-0001", "Espresso beans 1 kg", 2490, "EUR", 2),
        OrderLine(2, "TEA-0001", "Green tea", 990, "EUR", 1)], "EUR", NOW)
    order.mark_reserved(NOW)
    order.start_confirmation(PAYMENT_ID, NOW)
    order.confirm(NOW)
    if refunded:
        order.cancel_refunded(RejectionCode.CANCELLED_BY_STAFF, "refunded by staff", NOW)
    found: list[Envelope] = integration_events(order, order.new_events)
    return found


def _cancelled_before_confirmation() -> list[Envelope]:
    from services.orders.domain import Order, OrderLine, RejectionCode

    integration_events = producer("services.orders.store", "integration_events")
    order = Order.place(ORDER_ID, CUSTOMER, [
        OrderLine(1, "COF-0001", "Espresso beans 1 kg", 2490, "EUR", 1)], "EUR", NOW)
    order.mark_reserved(NOW)
    order.cancel(NOW, RejectionCode.CANCELLED_BY_CUSTOMER, "changed my mind")
    found: list[Envelope] = integration_events(order, order.new_events)
    return found


def _only(envelopes: list[Envelope], routing_key: str) -> Envelope:
    matching = [e for e in envelopes if e.routing_key == routing_key]
    keys = [e.routing_key for e in envelopes]
    assert len(matching) == 1, f"expected one {routing_key}, got {keys}"
    return matching[0]


ORDER_CONFIRMED = "orders.OrderConfirmed: an order was confirmed"
ORDER_CANCELLED = "orders.OrderCancelled: a reserved order was cancelled by its customer"
ORDER_REFUNDED = "orders.OrderCancelled: a confirmed order was refunded and cancelled"
USER_REGISTERED = "auth.UserRegistered: a customer registered"
STOCK_CHANGED = "catalog.StockChanged: stock was reserved"
LOW_STOCK = "catalog.LowStock: a product's available stock fell to its threshold"
POINTS_AWARDED = "loyalty.PointsAwarded: points were awarded for a confirmed order"
AWARD_REVERSED = "loyalty.AwardReversed: a refunded order's award was taken back"
NOTIFICATION_SENT = "notifications.NotificationSent: an order confirmation was sent"

SCENARIOS: dict[str, Callable[[], Envelope]] = {
    ORDER_CONFIRMED: lambda: _only(_order_events(refunded=False), "orders.OrderConfirmed"),
    ORDER_CANCELLED: lambda: _only(_cancelled_before_confirmation(), "orders.OrderCancelled"),
    ORDER_REFUNDED: lambda: _only(_order_events(refunded=True), "orders.OrderCancelled"),
    USER_REGISTERED: lambda: producer("auth.events", "user_registered")(
        user_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", role="customer"),
    STOCK_CHANGED: lambda: producer("services.catalog.events", "stock_changed")(
        product_id=1, on_hand=10, reserved=2, reason="reserve"),
    LOW_STOCK: lambda: producer("services.catalog.events", "low_stock")(
        product_id=1, available=5, threshold=5),
    POINTS_AWARDED: lambda: producer("services.loyalty.events", "points_awarded")(
        order_id=ORDER_ID, customer_id=CUSTOMER, points=59),
    AWARD_REVERSED: lambda: producer("services.loyalty.events", "award_reversed")(
        order_id=ORDER_ID, customer_id=CUSTOMER, points=59),
    NOTIFICATION_SENT: lambda: producer("services.notifications.events", "notification_sent")(
        notification_id=NOTIFICATION_ID, kind="order_confirmed", order_id=ORDER_ID),
}


def produce(scenario: str) -> Envelope:
    """The envelope the producer publishes in ``scenario`` (checked to be an Envelope)."""
    envelope = SCENARIOS[scenario]()
    if not isinstance(envelope, Envelope):
        raise AssertionError(f"{scenario}: the producer returned {type(envelope).__name__}, "
                             "not an Envelope")
    return envelope
