"""The event notifications publishes: ``notifications.NotificationSent`` (ids only)."""

from __future__ import annotations

from charter.messaging.envelope import Envelope

SOURCE = "notifications"
NOTIFICATION_SENT = "NotificationSent"
KINDS = ("order_confirmed", "order_cancelled", "welcome", "low_stock")


def notification_sent(notification_id: str, kind: str, order_id: str | None) -> Envelope:
    """``notifications.NotificationSent``: a message of ``kind`` went to the provider."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return Envelope.new(NOTIFICATION_SENT, {"notification_id": notification_id, "kind": kind,
                                            "order_id": order_id}, source=SOURCE)
