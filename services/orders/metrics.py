"""Orders' business and saga metrics, recorded once per order when its events commit.

:func:`on_append` is called by the repository where an order's new events are appended
to its stream (:meth:`services.orders.store.SqlOrderRepository._append`), and counts
after the transaction commits (:func:`charter.committed.on_commit`). The event store's
optimistic concurrency lets one writer only append a given transition, so a saga resumed
by another process, or a pass that lost a race, never counts an order twice.

* ``charter_orders_placed_total{service, currency}`` — ``OrderPlaced`` (v1 and v2).
* ``charter_saga_outcomes_total{service, outcome, reason}`` — the transition that settles
  the order: ``OrderConfirmed`` (``confirmed``, reason ``""``), ``OrderRejected`` or
  ``OrderCancelled`` before any confirmation (``cancelled``, reason = the rejection code,
  ``unspecified`` for a cancel without one). A refund after confirmation is not a second
  outcome (the order's saga ended ``confirmed``).
* ``charter_saga_duration_seconds{service, outcome}`` — placed → settled (event times).
* ``charter_revenue_minor_total{service, currency}`` — confirmed orders' totals in minor
  units of the order's currency (refunds are not subtracted: a counter only grows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from charter.committed import on_commit

from .domain import DomainEvent, Order

SERVICE = "orders"
CONFIRMED, CANCELLED = "confirmed", "cancelled"

ORDERS_PLACED = Counter(
    "charter_orders_placed_total", "Orders placed (v1 and v2), by order currency",
    ["service", "currency"])
SAGA_OUTCOMES = Counter(
    "charter_saga_outcomes_total",
    "Checkouts settled, by outcome (confirmed, cancelled) and reason (the rejection code; "
    "empty when confirmed)", ["service", "outcome", "reason"])
SAGA_DURATION = Histogram(
    "charter_saga_duration_seconds", "Time from an order placed to its outcome",
    ["service", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
REVENUE = Counter(
    "charter_revenue_minor_total",
    "Confirmed orders' totals in minor units, by order currency", ["service", "currency"])


def outcome(event: DomainEvent) -> tuple[str, str] | None:
    """``(outcome, reason)`` when ``event`` settles an order, else ``None``."""
    if event.type == "OrderConfirmed":
        return CONFIRMED, ""
    if event.type == "OrderRejected":
        return CANCELLED, str(event.data.get("code") or "unspecified")
    if event.type == "OrderCancelled" and not event.data.get("refunded"):
        return CANCELLED, str(event.data.get("code") or "unspecified")
    return None


def recorder(order: Order, new: Sequence[DomainEvent]) -> Callable[[], None] | None:
    """What to count for ``new`` events of ``order`` (values taken now), or ``None``."""
    steps: list[Callable[[], None]] = []
    currency, total, placed_at = order.currency, order.total, order.created_at
    for event in new:
        if event.type == "OrderPlaced":
            steps.append(ORDERS_PLACED.labels(SERVICE, currency).inc)
            continue
        settled = outcome(event)
        if settled is None:
            continue
        kind, reason = settled
        seconds = max(0.0, (event.occurred_at - placed_at).total_seconds())
        steps.append(SAGA_OUTCOMES.labels(SERVICE, kind, reason).inc)
        steps.append(partial(SAGA_DURATION.labels(SERVICE, kind).observe, seconds))
        if kind == CONFIRMED:
            steps.append(partial(REVENUE.labels(SERVICE, currency).inc, total))
    if not steps:
        return None

    def record() -> None:
        for step in steps:
            step()

    return record


def on_append(session: Session, order: Order, new: Sequence[DomainEvent]) -> None:
    """Count ``new`` events of ``order`` once ``session`` commits them."""
    record = recorder(order, new)
    if record is not None:
        on_commit(session, record)
