"""Loyalty's business metrics.

* ``charter_loyalty_points_awarded_total{service}`` — points credited by new awards (an
  award's first application only: a redelivered event or a repeated request adds none),
  counted once the award's transaction commits.
* ``charter_loyalty_pending_awards{service}`` — award work received but not yet applied:
  the messages waiting in loyalty's queue ``loyalty.orders`` (``orders.OrderConfirmed``
  and ``orders.OrderCancelled``), ready or in its delay queues for another attempt, as last
  measured by the consumer (every few seconds, in the worker that leads loyalty's
  messaging). Dead letters are not pending (``charter_dlq_messages``). A gauge in
  ``livemax`` mode: with several workers only the leader sets it, a dead worker's value
  leaves the sum.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SERVICE = "loyalty"

POINTS_AWARDED = Counter(
    "charter_loyalty_points_awarded_total", "Points credited by new awards", ["service"])
PENDING_AWARDS = Gauge(
    "charter_loyalty_pending_awards",
    "Messages waiting in loyalty.orders (ready or delayed for a retry), not yet applied",
    ["service"], multiprocess_mode="livemax")


def count_awarded(points: int) -> None:
    """Add ``points`` credited by one new award."""
    POINTS_AWARDED.labels(SERVICE).inc(points)


def set_pending(waiting: int) -> None:
    """The messages waiting in loyalty's award queue (``Consumes.on_depth``)."""
    PENDING_AWARDS.labels(SERVICE).set(waiting)
