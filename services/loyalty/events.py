"""The events loyalty publishes (``loyalty.PointsAwarded``,
``loyalty.AwardReversed``); ids and points only, never personal data."""

from __future__ import annotations

from charter.messaging.envelope import Envelope

SOURCE = "loyalty"
POINTS_AWARDED = "PointsAwarded"
AWARD_REVERSED = "AwardReversed"


def points_awarded(order_id: str, customer_id: str, points: int) -> Envelope:
    """``loyalty.PointsAwarded``: the order's award is in the ledger."""
    return Envelope.new(POINTS_AWARDED, {"order_id": order_id, "customer_id": customer_id,
                                         "points": points}, source=SOURCE)


def award_reversed(order_id: str, customer_id: str, points: int) -> Envelope:
    """``loyalty.AwardReversed``: the order's award was taken back (``points`` taken)."""
    return Envelope.new(AWARD_REVERSED, {"order_id": order_id, "customer_id": customer_id,
                                         "points": points}, source=SOURCE)
