"""Loyalty's consumer: points for a confirmed order, taken back when it is cancelled.

``SUBSCRIPTIONS`` declares the queue ``loyalty.orders`` (``orders.OrderConfirmed``,
``orders.OrderCancelled``); :class:`OrderEvents` is its handler. Each message is handled
in ONE database transaction holding the inbox claim of its id, the ledger change (through
the existing use cases :meth:`LoyaltyService.award` / :meth:`~LoyaltyService.reverse_award`,
both idempotent per order) and the reply event in the outbox (``loyalty.PointsAwarded`` /
``loyalty.AwardReversed``): a duplicate delivery changes nothing, and a failure (the
database is down or busy) rolls everything back and raises, so the broker retries later
and no award is lost. See ``docs/messaging.md``, *Consumers*.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from charter.committed import on_commit
from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.consumer import PoisonMessage, checked
from charter.messaging.envelope import Envelope
from charter.problems import NotFound, Problem
from charter.security.principal import Principal

from . import metrics
from .events import award_reversed, points_awarded
from .services import LoyaltyService
from .store import SqlLoyaltyRepository, inbox, outbox

log = logging.getLogger(__name__)

QUEUE = "loyalty.orders"
CONFIRMED = "orders.OrderConfirmed"
CANCELLED = "orders.OrderCancelled"
SUBSCRIPTIONS: tuple[Subscription, ...] = (Subscription(QUEUE, (CONFIRMED, CANCELLED)),)

CONSUMER = "loyalty.orders"
"""The inbox name of the handler (``<service>.<handler>``)."""
CANCELLED_FIRST = "loyalty.cancelled-before-award"
"""Inbox name under which an order id is kept when its refund came before its award."""

SERVICE = Principal(sub="loyalty", role="service", scopes=frozenset(), client_id="loyalty")
"""Who the use cases see acting: loyalty itself, a platform service."""


class _InTransaction:
    """:class:`~charter.unit_of_work.UnitOfWork` on the handler's open transaction.

    A use case's write runs in a savepoint, so its refusal (or a lost unique-index race
    that it retries) rolls back only its own changes, never the inbox claim around it.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    @contextmanager
    def read(self) -> Iterator[SqlLoyaltyRepository]:
        yield SqlLoyaltyRepository(self.session)

    @contextmanager
    def write(self) -> Iterator[SqlLoyaltyRepository]:
        with self.session.begin_nested():
            yield SqlLoyaltyRepository(self.session)


def reply(incoming: Envelope, event: Envelope) -> Envelope:
    """``event`` as caused by ``incoming`` (same correlation, saga and trace)."""
    return incoming.caused(event.type, event.data, source=event.source)


def is_refusal(problem: Problem) -> bool:
    """A business refusal that a retry cannot change (4xx), as opposed to a lost race
    the use case gave up on (the generic 409), which a later attempt can win."""
    return 400 <= problem.status < 500 and problem.kind != "conflict"


class OrderEvents:
    """The handler of ``loyalty.orders``: ``OrderEvents(db)(envelope)``.

    ``points_per_unit`` is the award rule (default ``LOYALTY_POINTS_PER_UNIT``). The
    relay is woken after a commit that wrote a reply by the runtime
    (:func:`charter.messaging.runtime.watch`).
    """

    def __init__(self, db: Database, points_per_unit: int | None = None) -> None:
        if points_per_unit is None:
            from .settings import LoyaltyConfig
            points_per_unit = LoyaltyConfig.parse().loyalty_points_per_unit
        self.db = db
        self.points_per_unit = points_per_unit

    def __call__(self, envelope: Envelope) -> None:
        """Handle one event; raises to have the broker retry it later."""
        if envelope.routing_key == CONFIRMED:
            handle = self._confirmed
        elif envelope.routing_key == CANCELLED:
            handle = self._cancelled
        else:
            raise PoisonMessage(f"{QUEUE} does not take {envelope.routing_key}")
        data = checked(envelope)
        with self.db.write() as session:
            if not inbox.claim(session, CONSUMER, envelope.id):
                log.info("duplicate %s %s ignored", envelope.routing_key, envelope.id)
                return
            handle(session, envelope, data)

    def _service(self, session: Session) -> LoyaltyService:
        return LoyaltyService(_InTransaction(session), self.points_per_unit)

    def _confirmed(self, session: Session, envelope: Envelope, data: dict[str, Any]) -> None:
        order_id, customer_id = data["order_id"], data["customer_id"]
        if _cancelled_first(session, order_id):
            log.warning("order %s was refunded before its award arrived: no points",
                        order_id)
            return
        try:
            result = self._service(session).award(
                SERVICE, customer_id, order_id, amount=data["total"]["amount_minor"],
                currency=data["total"]["currency"])
        except Problem as exc:
            if not is_refusal(exc):
                raise
            log.error("award for order %s refused (message %s): %s", order_id, envelope.id,
                      exc.detail or exc.title)
            return
        entry = result.value.entry
        if result.created:  # counted once the claim, award and reply commit together
            on_commit(session, lambda: metrics.count_awarded(entry.points))
        outbox.add(session, reply(envelope, points_awarded(order_id, entry.customer_id,
                                                           entry.points)))

    def _cancelled(self, session: Session, envelope: Envelope, data: dict[str, Any]) -> None:
        order_id, customer_id = data["order_id"], data["customer_id"]
        try:
            result = self._service(session).reverse_award(SERVICE, order_id)
        except NotFound:
            if not data["after_confirmation"]:
                return  # cancelled before it was confirmed: it never earned points
            # Refunded, but its award is not here (yet: it may be waiting for a retry).
            # Remember the order so a late award is not applied, and answer "0 taken".
            inbox.claim(session, CANCELLED_FIRST, order_id)
            log.warning("order %s refunded before any award: a late award will be skipped",
                        order_id)
            outbox.add(session, reply(envelope, award_reversed(order_id, customer_id, 0)))
            return
        except Problem as exc:
            if not is_refusal(exc):
                raise
            log.error("reversal for order %s refused (message %s): %s", order_id,
                      envelope.id, exc.detail or exc.title)
            return
        award = result.value
        taken = -award.reversal.points if award.reversal is not None else 0
        outbox.add(session, reply(envelope, award_reversed(order_id, award.entry.customer_id,
                                                           taken)))


def _cancelled_first(session: Session, order_id: str) -> bool:
    table = inbox.table
    found = session.execute(
        select(table.c.message_id).where(table.c.consumer == CANCELLED_FIRST,
                                         table.c.message_id == order_id)
    ).first()
    return found is not None
