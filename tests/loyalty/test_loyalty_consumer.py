"""Loyalty's consumer of ``loyalty.orders``: points on ``OrderConfirmed``, taken back on a
refunded ``OrderCancelled``, each once, with the reply in the outbox.

The handler is called directly with envelopes on a real SQLite and PostgreSQL database
(``any_database_url``), then fed through a real broker (the embedded one in a temporary
folder, and RabbitMQ: skipped on a laptop without it, a failure with ``CI=true``) with
``Consumer.drain``, including an outage of loyalty's database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from charter.db import Database
from charter.messaging import schemas
from charter.messaging.broker import Subscription
from charter.messaging.consumer import Consumer, PoisonMessage
from charter.messaging.envelope import Envelope
from charter.messaging.leader import LeaderLock
from charter.security.principal import Principal
from services.loyalty.app import loyalty_messaging, loyalty_service
from services.loyalty.messaging import CONSUMER, SUBSCRIPTIONS, OrderEvents
from services.loyalty.store import EntryRow, inbox, outbox
from tests.support.brokers import BACKENDS, temporary_broker, unique
from tests.support.polling import wait_until

ORDERS = Principal("orders", "service", frozenset({"loyalty:write"}))


def confirmed(order_id: str | None = None, customer: str = "alice", cents: int = 12_345,
              **extra: Any) -> Envelope:
    data = {"order_id": order_id or str(uuid.uuid4()), "customer_id": customer,
            "total": {"amount_minor": cents, "currency": "EUR"}, "item_count": 2,
            "payment_id": "pay-1", **extra}
    return Envelope.new("OrderConfirmed", data, source="orders",
                        correlation_id="corr-1", saga_id="saga-1")


def cancelled(order_id: str, customer: str = "alice", *, after_confirmation: bool = True,
              code: str | None = "cancelled_by_customer") -> Envelope:
    data = {"order_id": order_id, "customer_id": customer,
            "total": {"amount_minor": 12_345, "currency": "EUR"}, "item_count": 2,
            "code": code, "after_confirmation": after_confirmation}
    return Envelope.new("OrderCancelled", data, source="orders", correlation_id="corr-2")


def replies(db: Database) -> list[Envelope]:
    """The envelopes loyalty's outbox holds, in order."""
    with db.session() as session:
        return [row.envelope() for row in outbox.pending(session, 10_000)]


def entries(db: Database, order_id: str) -> list[tuple[str, int]]:
    with db.session() as session:
        rows = session.execute(select(EntryRow.type, EntryRow.points)
                               .where(EntryRow.order_id == order_id)
                               .order_by(EntryRow.id)).all()
    return [(t, p) for t, p in rows]


def processed(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(inbox.table)
                                  .where(inbox.table.c.consumer == CONSUMER)) or 0)


def balance(db: Database, customer: str) -> int:
    return loyalty_service(db, 1).balance(ORDERS, customer).balance


@pytest.fixture
def db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("loyalty", any_database_url)


@pytest.fixture
def handler(db: Database) -> OrderEvents:
    return OrderEvents(db, points_per_unit=1)


# -- the handler on each database ------------------------------------------------------------
def test_confirmed_order_is_awarded_once_and_answered(db: Database,
                                                      handler: OrderEvents) -> None:
    event = confirmed()
    handler(event)
    handler(event)  # a duplicate delivery
    order_id = event.data["order_id"]
    assert entries(db, order_id) == [("award", 123)]
    assert balance(db, "alice") == 123
    [answer] = replies(db)
    schemas.validate(answer)
    assert answer.routing_key == "loyalty.PointsAwarded"
    assert dict(answer.data) == {"order_id": order_id, "customer_id": "alice", "points": 123}
    assert (answer.causation_id, answer.correlation_id, answer.saga_id) == (
        event.id, "corr-1", "saga-1")
    assert processed(db) == 1


def test_refund_after_award_takes_the_points_back_once(db: Database,
                                                       handler: OrderEvents) -> None:
    award = confirmed()
    order_id = award.data["order_id"]
    handler(award)
    refund = cancelled(order_id)
    handler(refund)
    handler(refund)
    handler(cancelled(order_id))  # another message about the same refund
    assert entries(db, order_id) == [("award", 123), ("award_reversal", -123)]
    assert balance(db, "alice") == 0
    answers = [r for r in replies(db) if r.type == "AwardReversed"]
    assert [dict(a.data) for a in answers] == [
        {"order_id": order_id, "customer_id": "alice", "points": 123}] * 2
    for answer in answers:
        schemas.validate(answer)


def test_refund_before_its_award_skips_the_late_award(db: Database,
                                                      handler: OrderEvents) -> None:
    award = confirmed()
    order_id = award.data["order_id"]
    handler(cancelled(order_id))  # the award is still waiting for a retry somewhere
    handler(award)
    assert entries(db, order_id) == []
    assert balance(db, "alice") == 0
    assert [(r.type, r.data["points"]) for r in replies(db)] == [("AwardReversed", 0)]


def test_cancel_before_confirmation_changes_nothing(db: Database,
                                                    handler: OrderEvents) -> None:
    order_id = str(uuid.uuid4())
    handler(cancelled(order_id, after_confirmation=False, code="payment_declined"))
    handler(confirmed(order_id))  # not blocked: only refunds leave a mark
    assert entries(db, order_id) == [("award", 123)]
    assert [r.type for r in replies(db)] == ["PointsAwarded"]


def test_a_refused_award_is_recorded_and_not_retried(db: Database,
                                                     handler: OrderEvents) -> None:
    order_id = str(uuid.uuid4())
    loyalty_service(db, 1).award(ORDERS, "alice", order_id, points=7)  # other details
    event = confirmed(order_id)
    handler(event)  # no exception: the broker acks it
    assert entries(db, order_id) == [("award", 7)]
    assert replies(db) == []
    assert processed(db) == 1


@pytest.mark.parametrize("event", [
    Envelope.new("OrderConfirmed", {"order_id": "x"}, source="orders"),
    confirmed(customer="bad id with spaces"),
    confirmed(email="alice@example.com"),  # personal data is not in the contract
    Envelope.new("OrderShipped", {}, source="orders"),
], ids=["missing-fields", "bad-customer", "extra-field", "not-ours"])
def test_malformed_events_are_poison(db: Database, handler: OrderEvents,
                                     event: Envelope) -> None:
    with pytest.raises(PoisonMessage):
        handler(event)
    assert processed(db) == 0 and replies(db) == []


def test_a_database_outage_raises_and_leaves_nothing(db: Database, tmp_path: Path) -> None:
    (tmp_path / "down").mkdir()
    down = Database(f"sqlite:///{tmp_path / 'down'}")  # a directory: cannot be opened
    event = confirmed()
    try:
        with pytest.raises(Exception) as info:
            OrderEvents(down, points_per_unit=1)(event)
        assert not isinstance(info.value, PoisonMessage)
    finally:
        down.dispose()
    OrderEvents(db, points_per_unit=1)(event)  # the retry, once it is back
    assert entries(db, event.data["order_id"]) == [("award", 123)]


# -- through a real broker -------------------------------------------------------------------
def drain_until(consumer: Consumer, done: Callable[[], bool], deadline: float) -> None:
    end = time.monotonic() + deadline
    while not done():
        assert time.monotonic() < end, "the consumer did not finish in time"
        consumer.drain(timeout=2.0, idle=0.3)


@pytest.mark.parametrize("kind", BACKENDS)
def test_through_the_broker_no_award_is_lost_while_loyalty_is_down(
        kind: str, tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")
    (tmp_path / "down").mkdir()
    down = Database(f"sqlite:///{tmp_path / 'down'}")
    handler = OrderEvents(down, points_per_unit=1)  # loyalty's database is unreachable
    sub = Subscription(unique("loyalty.orders"), SUBSCRIPTIONS[0].bindings,
                       max_attempts=50, backoff=(0.3,))
    events = [confirmed(customer=f"c{i}", cents=100 * (i + 1)) for i in range(50)]
    with temporary_broker(kind, tmp_path) as broker:
        broker.declare(sub)
        for event in events:
            broker.publish(event)
        broker.publish(events[0])  # a duplicate from the producer's relay
        consumer = Consumer(broker, sub, handler, service="loyalty")
        failed = consumer.drain(timeout=3.0, idle=0.5)  # every attempt fails: retried
        assert failed >= 51 and replies(db) == []
        assert broker.queue_depth(sub.dlq) == 0
        handler.db = db  # loyalty is back
        drain_until(consumer, lambda: len(replies(db)) >= 50, deadline=20.0)
        refund = cancelled(events[0].data["order_id"], customer="c0")
        broker.publish(refund)
        broker.publish(refund)
        drain_until(consumer, lambda: len(replies(db)) >= 51, deadline=10.0)
        consumer.drain(timeout=2.0, idle=0.5)  # anything left (the duplicate refund)
        assert broker.queue_depth(sub.dlq) == 0
    down.dispose()
    for i, event in enumerate(events):
        points = i + 1
        expected = [("award", points)] + ([("award_reversal", -points)] if i == 0 else [])
        assert entries(db, event.data["order_id"]) == expected
        assert balance(db, f"c{i}") == (0 if i == 0 else points)
    answers = replies(db)
    assert sorted(a.type for a in answers) == ["AwardReversed"] + ["PointsAwarded"] * 50
    assert processed(db) == 51  # 50 awards and one refund: duplicates left no trace


def test_the_service_runtime_consumes_and_publishes_the_reply(
        tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> None:
    """``loyalty_messaging`` (what ``create_asgi`` starts): the consumer applies the award
    and the relay publishes ``PointsAwarded`` from the outbox."""
    db = migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")
    probe = Subscription(unique("orders.replies"), ("loyalty.PointsAwarded",))
    event = confirmed(customer="dora")
    with temporary_broker("embedded", tmp_path) as broker:
        broker.declare(probe)
        broker.declare(SUBSCRIPTIONS[0])  # before publishing: the runtime may not have yet
        messaging = loyalty_messaging(
            db, points_per_unit=1, broker=broker, registry=CollectorRegistry(),
            lock=LeaderLock("loyalty-messaging", db.url, var_dir=tmp_path), idle=0.05,
            lead_interval=0.1)
        with messaging:
            wait_until(lambda: messaging.leading, what="the leader lock")
            broker.publish(event)
            wait_until(lambda: broker.queue_depth(probe.queue) == 1, timeout=15.0,
                       what="PointsAwarded on the broker")
    assert balance(db, "dora") == 123
    with db.session() as session:
        assert outbox.backlog(session)[0] == 0  # the reply was published and marked sent
