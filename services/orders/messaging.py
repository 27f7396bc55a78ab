"""Orders' consumer: the participants' replies close the order's follow-ups.

Loyalty and notifications act on ``orders.OrderConfirmed`` / ``orders.OrderCancelled``
(the outbox of :mod:`.store`) and answer with events; ``SUBSCRIPTIONS`` binds them to the
queue ``orders.replies`` and :class:`OrderReplies` records each on the order, in one
transaction with the inbox claim of its id (a duplicate changes nothing):

* ``loyalty.PointsAwarded`` → ``loyalty_status`` done;
* ``loyalty.AwardReversed`` → ``loyalty_reversal_status`` done (``loyalty.not_awarded``
  when it took 0 points back);
* ``notifications.NotificationSent`` of kind ``order_confirmed`` → ``notification_status``
  done (other kinds concern no follow-up of the order).

A reply for an order this service does not know is logged and acknowledged; one that
breaks the event contract goes to the dead-letter queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from charter.clock import utcnow
from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.consumer import checked
from charter.messaging.envelope import Envelope

from .domain import FollowUp, Order, OrderStatus
from .store import SqlOrderRepository, inbox

log = logging.getLogger(__name__)

QUEUE = "orders.replies"
AWARDED = "loyalty.PointsAwarded"
REVERSED = "loyalty.AwardReversed"
SENT = "notifications.NotificationSent"
SUBSCRIPTIONS: tuple[Subscription, ...] = (Subscription(QUEUE, (AWARDED, REVERSED, SENT)),)
CONSUMER = "orders.replies"
OPEN = (FollowUp.PENDING, FollowUp.PENDING_RETRY)


class OrderReplies:
    """The handler of ``orders.replies``."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def __call__(self, envelope: Envelope) -> None:
        data = checked(envelope)
        order_id = data.get("order_id")
        if envelope.routing_key == SENT and data.get("kind") != "order_confirmed":
            return
        if not order_id:
            return
        with self.db.write() as session:
            if not inbox.claim(session, CONSUMER, envelope.id):
                return
            repo = SqlOrderRepository(session)
            order = repo.get(str(order_id), lock=True)
            if order is None:
                log.warning("reply %s for unknown order %s ignored", envelope.routing_key,
                            order_id)
                return
            self._record(order, envelope)
            repo.save(order)

    def _record(self, order: Order, envelope: Envelope) -> None:
        now = self.clock()
        if envelope.routing_key == AWARDED:
            if order.loyalty_status in OPEN:
                order.record("loyalty", FollowUp.DONE, now)
        elif envelope.routing_key == REVERSED:
            if order.status is OrderStatus.CANCELLED and order.loyalty_reversal_status in OPEN:
                points = int(envelope.data.get("points") or 0)
                order.record_reversal(FollowUp.DONE, now, awarded=points > 0)
        elif order.notification_status in OPEN:
            order.record("notification", FollowUp.DONE, now)
