"""Notifications' consumer of ``notifications.events``: order confirmation and
cancellation, welcome and low-stock messages, each sent once, with
``NotificationSent`` in the outbox.

The handler is called directly with envelopes on a real SQLite and PostgreSQL database
(``any_database_url``) and a recording provider, then fed through a real broker (the
embedded one in a temporary folder, and RabbitMQ: skipped on a laptop without it, a
failure with ``CI=true``) with ``Consumer.drain``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from notifications_support import InMemoryProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from charter import config
from charter.db import Database
from charter.messaging import schemas
from charter.messaging.broker import Subscription
from charter.messaging.consumer import Consumer, PoisonMessage
from charter.messaging.envelope import Envelope
from charter.messaging.leader import LeaderLock
from services.notifications.app import notifications_messaging
from services.notifications.messaging import (
    SUBSCRIPTIONS,
    EventNotifications,
    platform_address,
)
from services.notifications.ports import ProviderError
from services.notifications.settings import NotificationsConfig
from services.notifications.store import NotificationRow, outbox
from tests.support.brokers import BACKENDS, temporary_broker, unique
from tests.support.polling import wait_until

STAFF = "ops@example.com"


def order(type_: str, order_id: str, **data: Any) -> Envelope:
    base = {"order_id": order_id, "customer_id": "alice",
            "total": {"amount_minor": 12_345, "currency": "EUR"}, "item_count": 2}
    return Envelope.new(type_, {**base, **data}, source="orders", correlation_id="corr-1")


def confirmed(order_id: str | None = None) -> Envelope:
    return order("OrderConfirmed", order_id or str(uuid.uuid4()), payment_id="pay-1")


def cancelled(order_id: str, *, refunded: bool, code: str | None) -> Envelope:
    return order("OrderCancelled", order_id, code=code, after_confirmation=refunded)


def registered(user_id: str = "bob") -> Envelope:
    return Envelope.new("UserRegistered", {"user_id": user_id, "role": "customer"},
                        source="auth")


def low_stock(product_id: int = 7) -> Envelope:
    return Envelope.new("LowStock", {"product_id": product_id, "available": 3,
                                     "threshold": 5}, source="catalog")


def replies(db: Database) -> list[Envelope]:
    with db.session() as session:
        return [row.envelope() for row in outbox.pending(session, 10_000)]


def records(db: Database) -> list[tuple[str, str | None, str | None]]:
    """``(status, template, order_id)`` of every notification record, oldest first."""
    with db.session() as session:
        rows = session.execute(select(NotificationRow.status, NotificationRow.template,
                                      NotificationRow.order_id)
                               .order_by(NotificationRow.seq)).all()
    return [(s, t, o) for s, t, o in rows]


@pytest.fixture
def db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("notifications", any_database_url)


@pytest.fixture
def provider() -> InMemoryProvider:
    return InMemoryProvider()


@pytest.fixture
def handler(db: Database, provider: InMemoryProvider) -> EventNotifications:
    return EventNotifications(db, provider, staff_address=STAFF)


# -- the handler on each database ------------------------------------------------------------
def test_order_confirmation_is_sent_once_and_answered(
        db: Database, provider: InMemoryProvider, handler: EventNotifications) -> None:
    event = confirmed()
    order_id = event.data["order_id"]
    handler(event)
    handler(event)  # a duplicate delivery
    [message] = provider.sent
    assert message.recipient == "alice@customers.charter.local"
    assert message.subject == f"Your order {order_id} is confirmed"
    assert "123.45 EUR" in message.body and message.order_id == order_id
    assert records(db) == [("sent", "order_confirmed", order_id)]
    [answer] = replies(db)
    schemas.validate(answer)
    assert answer.routing_key == "notifications.NotificationSent"
    assert dict(answer.data) == {"notification_id": message.id, "kind": "order_confirmed",
                                 "order_id": order_id}
    assert (answer.causation_id, answer.correlation_id) == (event.id, "corr-1")


@pytest.mark.parametrize(("refunded", "code", "says"), [
    (True, "cancelled_by_customer", ["you cancelled it", "123.45 EUR is refunded"]),
    (False, "payment_declined", ["the payment was declined", "No payment was taken"]),
    (False, None, ["no reason was given"]),
])
def test_order_cancellation_says_why_and_whether_refunded(
        db: Database, provider: InMemoryProvider, handler: EventNotifications,
        refunded: bool, code: str | None, says: list[str]) -> None:
    order_id = str(uuid.uuid4())
    handler(cancelled(order_id, refunded=refunded, code=code))
    [message] = provider.sent
    assert message.subject == f"Your order {order_id} was cancelled"
    for text in says:
        assert text in message.body
    assert [(r.data["kind"], r.data["order_id"]) for r in replies(db)] == [
        ("order_cancelled", order_id)]


def test_welcome_goes_to_the_new_user(db: Database, provider: InMemoryProvider,
                                      handler: EventNotifications) -> None:
    handler(registered("user:42"))
    [message] = provider.sent
    assert message.recipient == platform_address("user:42") == (
        "user-42@customers.charter.local")
    assert message.subject == "Welcome to Charter"
    [answer] = replies(db)
    schemas.validate(answer)
    assert (answer.data["kind"], answer.data["order_id"]) == ("welcome", None)


def test_low_stock_goes_to_staff(db: Database, provider: InMemoryProvider,
                                 handler: EventNotifications) -> None:
    handler(low_stock(7))
    [message] = provider.sent
    assert message.recipient == STAFF
    assert "Product 7" in message.body and "3 available" in message.body
    assert [r.data["kind"] for r in replies(db)] == ["low_stock"]


def test_an_unreachable_provider_is_retried_as_a_new_send(
        db: Database, provider: InMemoryProvider, handler: EventNotifications) -> None:
    event = confirmed()
    provider.fail = ProviderError("memory", "server unreachable", permanent=False)
    with pytest.raises(ProviderError):
        handler(event)
    assert provider.sent == [] and replies(db) == []
    provider.fail = None
    handler(event)  # the broker's retry
    handler(event)  # and a duplicate of it
    assert len(provider.sent) == 1
    order_id = event.data["order_id"]
    assert records(db) == [("failed", "order_confirmed", order_id),
                           ("sent", "order_confirmed", order_id)]
    assert len(replies(db)) == 1


def test_a_refused_message_is_recorded_and_not_retried(
        db: Database, provider: InMemoryProvider, handler: EventNotifications) -> None:
    event = registered()
    provider.fail = ProviderError("memory", "550 no such user", permanent=True)
    handler(event)  # no exception: the broker acks it
    provider.fail = None
    handler(event)  # a redelivery sends nothing
    assert provider.sent == [] and replies(db) == []
    assert records(db) == [("failed", "welcome", None)]


@pytest.mark.parametrize("event", [
    Envelope.new("UserRegistered", {"user_id": "bob"}, source="auth"),
    Envelope.new("UserRegistered", {"user_id": "bob", "role": "customer",
                                    "email": "bob@example.com"}, source="auth"),
    Envelope.new("StockChanged", {}, source="catalog"),
], ids=["missing-role", "personal-data", "not-ours"])
def test_malformed_events_are_poison(db: Database, provider: InMemoryProvider,
                                     handler: EventNotifications, event: Envelope) -> None:
    with pytest.raises(PoisonMessage):
        handler(event)
    assert provider.sent == [] and records(db) == []


# -- the staff address -----------------------------------------------------------------------
def test_low_stock_without_a_staff_address_is_dead_lettered_outside_development(
        db: Database, provider: InMemoryProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFICATIONS_STAFF_ADDRESS", raising=False)
    monkeypatch.setenv("CHARTER_ENV", "production")
    handler = EventNotifications(db, provider)
    with pytest.raises(PoisonMessage, match="NOTIFICATIONS_STAFF_ADDRESS"):
        handler(low_stock())
    handler(registered())  # customers' messages are not held up
    assert [m.template for m in provider.sent] == ["welcome"]
    monkeypatch.setenv("NOTIFICATIONS_STAFF_ADDRESS", STAFF)
    EventNotifications(db, provider)(low_stock())  # replayed once it is configured
    assert [m.recipient for m in provider.sent][-1] == STAFF


def test_staff_address_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFICATIONS_STAFF_ADDRESS", raising=False)
    monkeypatch.setenv("CHARTER_ENV", "development")
    assert NotificationsConfig.parse().staff_address() == "staff@charter.local"
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(config.ConfigError, match="NOTIFICATIONS_STAFF_ADDRESS"):
        NotificationsConfig.parse().staff_address()
    monkeypatch.setenv("NOTIFICATIONS_STAFF_ADDRESS", "Ops@Example.COM")
    assert NotificationsConfig.parse().staff_address() == "Ops@example.com"
    monkeypatch.setenv("NOTIFICATIONS_STAFF_ADDRESS", "ops@example.com\r\nBcc: x@y.z")
    with pytest.raises(config.ConfigError, match="NOTIFICATIONS_STAFF_ADDRESS"):
        NotificationsConfig.parse()


# -- through a real broker -------------------------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
def test_through_the_broker_each_event_sends_one_message(
        kind: str, tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("notifications", f"sqlite:///{tmp_path / 'notifications.db'}")
    provider = InMemoryProvider()
    handler = EventNotifications(db, provider, staff_address=STAFF)
    sub = Subscription(unique("notifications.events"), SUBSCRIPTIONS[0].bindings,
                       max_attempts=5, backoff=(0.3,))
    order_id = str(uuid.uuid4())
    events = [confirmed(order_id), cancelled(order_id, refunded=True,
                                             code="cancelled_by_staff"),
              registered("carol"), low_stock(9)]
    with temporary_broker(kind, tmp_path) as broker:
        broker.declare(sub)
        for event in events:
            broker.publish(event)
            broker.publish(event)  # every one delivered twice
        broker.publish(Envelope.new("StockChanged", {"product_id": 9}, source="catalog"))
        consumer = Consumer(broker, sub, handler, service="notifications")
        assert consumer.drain(timeout=10.0, idle=0.5) == 8  # StockChanged is not bound
        assert broker.queue_depth(sub.dlq) == 0
    assert sorted((m.template, m.recipient) for m in provider.sent) == [
        ("low_stock", STAFF), ("order_cancelled", "alice@customers.charter.local"),
        ("order_confirmed", "alice@customers.charter.local"),
        ("welcome", "carol@customers.charter.local")]
    answers = replies(db)
    assert sorted(a.data["kind"] for a in answers) == [
        "low_stock", "order_cancelled", "order_confirmed", "welcome"]
    assert {a.data["notification_id"] for a in answers} == {m.id for m in provider.sent}


def test_the_service_runtime_consumes_and_publishes_the_reply(
        tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> None:
    """``notifications_messaging`` (what ``create_asgi`` starts): the consumer sends the
    welcome and the relay publishes ``NotificationSent`` from the outbox."""
    db = migrated_db("notifications", f"sqlite:///{tmp_path / 'notifications.db'}")
    provider = InMemoryProvider()
    probe = Subscription(unique("orders.replies"), ("notifications.NotificationSent",))
    with temporary_broker("embedded", tmp_path) as broker:
        broker.declare(probe)
        broker.declare(SUBSCRIPTIONS[0])  # before publishing: the runtime may not have yet
        messaging = notifications_messaging(
            db, provider, broker=broker, registry=CollectorRegistry(),
            lock=LeaderLock("notifications-messaging", db.url, var_dir=tmp_path),
            idle=0.05, lead_interval=0.1)
        with messaging:
            broker.publish(registered("erin"))
            wait_until(lambda: broker.queue_depth(probe.queue) == 1, timeout=15.0,
                       what="NotificationSent on the broker")
    assert [m.recipient for m in provider.sent] == ["erin@customers.charter.local"]
    with db.session() as session:
        assert outbox.backlog(session)[0] == 0
