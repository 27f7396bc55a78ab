"""``charter up`` declares every consumer's queue before anything starts, so an event
published before its consumer ever ran waits in that consumer's queue (RabbitMQ drops a
message no queue is bound for)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from charter.messaging.broker import Broker, UnknownQueue
from charter.messaging.envelope import Envelope
from charterctl import registry, runner


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    broker = Broker.from_config()
    yield broker
    broker.close()


def confirmed() -> Envelope:
    return Envelope.new("OrderConfirmed", {
        "order_id": "o-1", "customer_id": "alice", "item_count": 1, "payment_id": "pay_1",
        "total": {"amount_minor": 100, "currency": "EUR"}}, source="orders")


def test_every_consumer_queue_exists_before_any_consumer_ran(embedded: Broker) -> None:
    queues = registry.consumer_queues()
    assert {"loyalty.orders", "notifications.events", "orders.replies"} <= set(queues)
    with pytest.raises(UnknownQueue):  # nothing declared yet: the event would be lost
        embedded.queue_depth("loyalty.orders")
    line = runner.declare_topology()
    assert f"{len(queues)} consumer queues declared" in line
    embedded.publish(confirmed())
    assert embedded.queue_depth("loyalty.orders") == 1
    assert embedded.queue_depth("notifications.events") == 1
    assert embedded.queue_depth("orders.replies") == 0  # not bound to orders' own events
    assert runner.declare_topology() == line  # idempotent


def test_a_broker_that_is_down_does_not_stop_the_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://guest:secret@127.0.0.1:1//")
    line = runner.declare_topology()
    assert "broker unavailable" in line and "secret" not in line
