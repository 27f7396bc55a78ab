"""Loyalty's business metrics: points awarded (once per award, after its commit) and
pending awards (messages waiting in ``loyalty.orders``, ready or delayed for a retry)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from test_loyalty_consumer import confirmed

from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.consumer import Consumer
from charter.testing import TokenFactory
from services.loyalty import metrics
from services.loyalty.app import create_app, loyalty_messaging
from services.loyalty.messaging import SUBSCRIPTIONS, OrderEvents
from tests.support.brokers import BACKENDS, temporary_broker, unique
from tests.support.metrics import sample, scrape

AWARDED = "charter_loyalty_points_awarded_total"
PENDING = "charter_loyalty_pending_awards"


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")


def test_points_awarded_count_once_per_award_on_metrics(db: Database,
                                                        tokens: TokenFactory) -> None:
    handler = OrderEvents(db, points_per_unit=1)
    with create_app(db, verifier=tokens.verifier()).test_client() as client:
        before = sample(scrape(client), AWARDED, service="loyalty")
        event = confirmed(cents=12_345)  # 123 points
        handler(event)
        handler(event)  # a redelivery awards nothing more
        handler(confirmed(order_id=str(uuid.uuid4()), cents=1_000))  # 10 points
        assert sample(scrape(client), AWARDED, service="loyalty") == before + 133


def test_a_rolled_back_award_is_not_counted(tmp_path: Path,
                                            migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")
    before = REGISTRY.get_sample_value(AWARDED, {"service": "loyalty"}) or 0.0

    class FailingOutbox(OrderEvents):
        def _confirmed(self, session: Any, envelope: Any, data: Any) -> None:
            super()._confirmed(session, envelope, data)
            raise RuntimeError("the reply could not be written")  # the whole message fails

    with pytest.raises(RuntimeError):
        FailingOutbox(db, points_per_unit=1)(confirmed(cents=5_000))
    assert (REGISTRY.get_sample_value(AWARDED, {"service": "loyalty"}) or 0.0) == before


@pytest.mark.parametrize("kind", BACKENDS)
def test_pending_awards_are_the_messages_waiting_ready_or_delayed(kind: str,
                                                                  tmp_path: Path) -> None:
    sub = Subscription(unique("loyalty.orders"), SUBSCRIPTIONS[0].bindings, max_attempts=3,
                       backoff=(30.0, 60.0))
    seen: list[int] = []

    def failing(envelope: Any) -> None:
        raise RuntimeError("loyalty's database is down (test)")

    with temporary_broker(kind, tmp_path) as broker:
        broker.declare(sub)
        for _ in range(3):
            broker.publish(confirmed())
        consumer = Consumer(broker, sub, failing, service="loyalty", on_depth=seen.append)
        consumer._update_gauges(force=True)
        assert seen[-1] == 3  # ready
        consumer.drain(timeout=2.0, idle=0.3)  # each fails once: delayed 30 s for a retry
        assert broker.queue_depth(sub.queue) == 0
        broker.publish(confirmed())
        consumer._update_gauges(force=True)
        assert seen[-1] == 4  # 1 ready + 3 delayed


def test_loyalty_messaging_feeds_the_pending_awards_gauge(db: Database) -> None:
    messaging = loyalty_messaging(db, broker=lambda: None)  # type: ignore[arg-type,return-value]
    [consumes] = messaging.consumes
    assert consumes.on_depth is metrics.set_pending
    metrics.set_pending(7)
    assert REGISTRY.get_sample_value(PENDING, {"service": "loyalty"}) == 7
