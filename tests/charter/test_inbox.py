"""Idempotent consumers: the inbox's claim commits with the effect, once per consumer and
message, on real databases (SQLite file and PostgreSQL), concurrent deliveries included."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, String, Table, func, insert, select

from charter.db import Database, service_metadata
from charter.messaging.inbox import Inbox, add_inbox_table
from tests.support.clocks import SettableClock
from tests.support.races import run_threads

CONSUMER = "loyalty.award-points"


class Consumer:
    """A consumer service: an effects table and the inbox in its own database."""

    def __init__(self, url: str) -> None:
        metadata = service_metadata()
        self.effects = Table("awards", metadata,
                             Column("id", Integer, primary_key=True, autoincrement=True),
                             Column("message_id", String(36), nullable=False))
        self.table = add_inbox_table(metadata)
        self.db = Database(url)
        metadata.create_all(self.db.engine)
        self.clock = SettableClock()
        self.inbox = Inbox(self.table, clock=self.clock.now)

    def handle(self, message_id: str, consumer: str = CONSUMER) -> bool:
        """The idempotent handler: claim, then the effect, in one transaction."""
        with self.db.write() as session:
            if not self.inbox.claim(session, consumer, message_id):
                return False
            session.execute(insert(self.effects).values(message_id=message_id))
            return True

    def effects_of(self, message_id: str) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(self.effects)
                                      .where(self.effects.c.message_id == message_id)) or 0)


@pytest.fixture
def consumer(any_database_url: str) -> Iterator[Consumer]:
    made = Consumer(any_database_url)
    yield made
    made.db.dispose()


def test_second_claim_is_false_and_the_transaction_still_commits(consumer: Consumer) -> None:
    message_id = str(uuid.uuid4())
    assert consumer.handle(message_id) is True
    with consumer.db.write() as session:
        assert consumer.inbox.claim(session, CONSUMER, message_id) is False
        # the transaction is still usable after the refused claim: this write commits
        session.execute(insert(consumer.effects).values(message_id="other-write"))
        assert consumer.inbox.claim(session, CONSUMER, "another-id") is True

    assert consumer.effects_of(message_id) == 1
    assert consumer.effects_of("other-write") == 1
    assert consumer.handle("another-id") is False  # committed with the other write


def test_ids_are_per_consumer(consumer: Consumer) -> None:
    message_id = str(uuid.uuid4())
    assert consumer.handle(message_id, "loyalty.award-points") is True
    assert consumer.handle(message_id, "notifications.order-confirmed") is True
    assert consumer.handle(message_id, "loyalty.award-points") is False


def test_a_failed_effect_releases_the_claim_for_redelivery(consumer: Consumer) -> None:
    message_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), consumer.db.write() as session:
        assert consumer.inbox.claim(session, CONSUMER, message_id)
        raise RuntimeError("the effect failed: nothing commits")
    assert consumer.handle(message_id) is True
    assert consumer.effects_of(message_id) == 1


def test_concurrent_deliveries_have_one_effect(consumer: Consumer) -> None:
    message_id = str(uuid.uuid4())
    results = run_threads(8, lambda _: consumer.handle(message_id), timeout=30)
    assert results.count(True) == 1, results
    assert results.count(False) == 7, results
    assert consumer.effects_of(message_id) == 1


def test_a_concurrent_claim_waits_for_the_first_and_wins_if_it_rolls_back(
        postgres_url: str) -> None:
    """PostgreSQL: the second claim blocks on the first's uncommitted row (SQLite
    serialises whole write transactions instead, covered by the test above)."""
    consumer = Consumer(postgres_url)
    try:
        _second_claim_after_rollback(consumer)
    finally:
        consumer.db.dispose()


def _second_claim_after_rollback(consumer: Consumer) -> None:
    message_id = str(uuid.uuid4())
    claimed, finish = threading.Event(), threading.Event()

    def first() -> None:
        with pytest.raises(RuntimeError), consumer.db.write() as session:
            assert consumer.inbox.claim(session, CONSUMER, message_id)
            claimed.set()
            finish.wait(10)
            raise RuntimeError("rolled back")

    thread = threading.Thread(target=first)
    thread.start()
    assert claimed.wait(10)
    second: list[bool] = []
    waiter = threading.Thread(target=lambda: second.append(consumer.handle(message_id)))
    waiter.start()
    waiter.join(0.3)
    assert second == []  # blocked on the first transaction's uncommitted claim
    finish.set()
    thread.join(10)
    waiter.join(10)
    assert second == [True]
    assert consumer.effects_of(message_id) == 1


def test_purge_forgets_old_ids(consumer: Consumer) -> None:
    consumer.handle("old")
    consumer.clock.advance(10 * 86400)
    consumer.handle("recent")
    with consumer.db.write() as session:
        assert consumer.inbox.purge(session, timedelta(days=7)) == 1
    assert consumer.handle("recent") is False
    assert consumer.handle("old") is True  # forgotten: a redelivery would be processed


@pytest.mark.parametrize(("consumer_name", "message_id"), [
    ("", "id"), ("c" * 81, "id"), ("c", ""), ("c", "m" * 37),
])
def test_claim_refuses_out_of_range_names(consumer: Consumer, consumer_name: str,
                                          message_id: str) -> None:
    with consumer.db.write() as session, pytest.raises(ValueError):
        consumer.inbox.claim(session, consumer_name, message_id)


def test_claim_through_a_savepoint_on_other_databases(tmp_path: Path) -> None:
    """The portable path (no ``ON CONFLICT``) gives the same answers."""

    class PortableInbox(Inbox):
        def claim(self, session, consumer, message_id):  # type: ignore[no-untyped-def]
            bind = session.get_bind()
            original = bind.dialect.name
            bind.dialect.name = "other"
            try:
                return super().claim(session, consumer, message_id)
            finally:
                bind.dialect.name = original

    consumer = Consumer(f"sqlite:///{tmp_path}/portable.db")
    consumer.inbox = PortableInbox(consumer.table)
    try:
        assert consumer.handle("m-1") is True
        assert consumer.handle("m-1") is False
        assert consumer.effects_of("m-1") == 1
    finally:
        consumer.db.dispose()
