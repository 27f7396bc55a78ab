"""The transactional outbox and its relay on real databases (SQLite file and PostgreSQL).

The broker is a plain ``publish`` callable here (the relay's whole contract with it), so
these tests pin the outbox semantics: rows commit with the caller's transaction, the relay
publishes in order, a failed publish is retried without loss, a crash between publish and
mark gives a duplicate, never a loss.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Column, String, Table, insert, select

from charter.db import Database, service_metadata
from charter.messaging.envelope import Envelope
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.messaging.relay import OutboxRelay, PublishFailed
from tests.support.clocks import START, SettableClock
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
T0 = START


class Store:
    """A service's database with a state table and the outbox."""

    def __init__(self, url: str) -> None:
        self.metadata = service_metadata()
        self.orders = Table("orders", self.metadata, Column("id", String(36), primary_key=True))
        self.table = add_outbox_table(self.metadata)
        self.db = Database(url)
        self.metadata.create_all(self.db.engine)
        self.clock = SettableClock()
        self.outbox = Outbox(self.table, clock=self.clock.now)

    def place(self, *envelopes: Envelope) -> None:
        """One use case: a state change and its events in one transaction."""
        with self.db.write() as session:
            for env in envelopes:
                session.execute(insert(self.orders).values(id=env.id))
            self.outbox.add(session, *envelopes)

    def unsent(self) -> list[str]:
        with self.db.session() as session:
            return [row.event_id for row in self.outbox.pending(session, 1000)]

    def row(self, event_id: str) -> dict[str, object]:
        with self.db.session() as session:
            found = session.execute(
                select(self.table).where(self.table.c.event_id == event_id)).mappings().one()
            return dict(found)


@pytest.fixture
def store(any_database_url: str) -> Iterator[Store]:
    made = Store(any_database_url)
    yield made
    made.db.dispose()


def events(count: int) -> list[Envelope]:
    return [Envelope.new("OrderPlaced", {"n": i}, source="orders") for i in range(count)]


def relay_for(store: Store, publish: object, **options: object) -> OutboxRelay:
    options.setdefault("registry", CollectorRegistry())
    return OutboxRelay(store.db, store.outbox, publish,  # type: ignore[arg-type]
                       service="orders", **options)  # type: ignore[arg-type]


def metric(relay: OutboxRelay, registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"service": relay.service})


def test_outbox_rows_commit_and_roll_back_with_the_callers_transaction(store: Store) -> None:
    committed, rolled_back = events(2), events(2)
    store.place(*committed)
    with pytest.raises(RuntimeError), store.db.write() as session:
        session.execute(insert(store.orders).values(id=rolled_back[0].id))
        store.outbox.add(session, *rolled_back)
        raise RuntimeError("the use case failed after writing its events")

    assert store.unsent() == [env.id for env in committed]
    with store.db.session() as session:
        assert set(session.scalars(select(store.orders.c.id))) == {e.id for e in committed}
    row = store.row(committed[0].id)
    assert row["routing_key"] == "orders.OrderPlaced"
    assert Envelope.from_json(str(row["body"])) == committed[0]
    assert row["created_at"] == T0 and row["sent_at"] is None and row["attempts"] == 0


def test_relay_publishes_in_order_and_marks_sent(store: Store) -> None:
    first, second = events(3), events(2)
    store.place(*first)
    store.place(*second)
    seen: list[Envelope] = []
    relay = relay_for(store, seen.append, batch=2)

    assert [relay.run_once() for _ in range(4)] == [2, 2, 1, 0]

    assert seen == first + second  # whole envelopes, in position order
    assert store.unsent() == []
    assert store.row(first[0].id)["sent_at"] is not None


def test_backlog_and_lag_metrics(store: Store) -> None:
    registry = CollectorRegistry()
    store.place(*events(3))
    store.clock.advance(5)
    with store.db.session() as session:
        assert store.outbox.backlog(session) == (3, 5.0)

    def broker_down(envelope: Envelope) -> None:
        raise ConnectionError("broker unreachable")

    down = relay_for(store, broker_down, registry=registry)
    with pytest.raises(PublishFailed):
        down.run_once()
    assert metric(down, registry, "charter_outbox_backlog") == 3
    assert metric(down, registry, "charter_outbox_lag_seconds") == 5.0
    assert metric(down, registry, "charter_outbox_publish_errors_total") == 1
    assert metric(down, registry, "charter_outbox_published_total") == 0

    up = relay_for(store, lambda envelope: None, registry=registry)  # same registry: shared
    assert up.run_once() == 3
    assert metric(up, registry, "charter_outbox_backlog") == 0
    assert metric(up, registry, "charter_outbox_lag_seconds") == 0
    assert metric(up, registry, "charter_outbox_published_total") == 3
    with store.db.session() as session:
        assert store.outbox.backlog(session) == (0, None)


def test_the_backlog_gauge_follows_full_batches_and_drops_to_zero_when_drained(
        store: Store) -> None:
    """A full batch may leave rows behind (the gauge asks the table); a short one saw
    every unsent row, so the gauge is zero without a query of its own."""
    registry = CollectorRegistry()
    store.place(*events(5))
    store.clock.advance(2)
    relay = relay_for(store, lambda envelope: None, registry=registry, batch=2)
    counts = []
    for _ in range(3):
        counts.append((relay.run_once(), metric(relay, registry, "charter_outbox_backlog")))
    assert counts == [(2, 3), (2, 1), (1, 0)]
    assert metric(relay, registry, "charter_outbox_lag_seconds") == 0


def test_publish_failure_is_retried_later_in_order_without_loss(store: Store) -> None:
    placed = events(5)
    store.place(*placed)
    seen: list[str] = []
    failures = {placed[2].id: 2}  # the third event fails twice

    def publish(envelope: Envelope) -> None:
        if failures.get(envelope.id):
            failures[envelope.id] -= 1
            raise ConnectionError("amqp://guest:s3cret@rabbit:5672 connection refused")
        seen.append(envelope.id)

    relay = relay_for(store, publish)
    for _ in range(2):
        with pytest.raises(PublishFailed) as failed:
            relay.run_once()
        assert failed.value.position == store.row(placed[2].id)["position"]
    assert seen == [placed[0].id, placed[1].id]  # stopped at the failure: order kept
    row = store.row(placed[2].id)
    assert row["attempts"] == 2 and row["sent_at"] is None
    assert "connection refused" in str(row["last_error"])
    assert "s3cret" not in str(row["last_error"])  # credentials never stored

    assert relay.run_once() == 3
    assert seen == [env.id for env in placed]
    assert store.unsent() == []


class MarkFails(Outbox):
    """An outbox whose first ``mark_sent`` fails, as if the process died right there."""

    failed = False

    def mark_sent(self, *args: object, **kwargs: object) -> int:
        if not self.failed:
            self.failed = True
            raise ConnectionError("database went away before the mark")
        return super().mark_sent(*args, **kwargs)  # type: ignore[arg-type]


def test_failed_mark_after_publish_gives_a_duplicate_not_a_loss(store: Store) -> None:
    placed = events(3)
    store.place(*placed)
    seen: list[str] = []
    outbox = MarkFails(store.table, clock=store.clock.now)
    relay = OutboxRelay(store.db, outbox, lambda env: seen.append(env.id),
                        service="orders", registry=CollectorRegistry())

    with pytest.raises(ConnectionError):
        relay.run_once()
    assert store.unsent() == [env.id for env in placed]  # published but not marked
    assert relay.run_once() == 3

    assert seen == [env.id for env in placed] * 2  # each one twice, none lost
    assert store.unsent() == []


CRASHING_RELAY = textwrap.dedent("""
    import os, signal, sys
    from prometheus_client import CollectorRegistry
    from charter.db import Database, service_metadata
    from charter.messaging.outbox import Outbox, add_outbox_table
    from charter.messaging.relay import OutboxRelay

    url, sink = sys.argv[1], sys.argv[2]
    table = add_outbox_table(service_metadata())
    published = []

    def publish(envelope):
        with open(sink, "a") as f:  # the broker confirmed this one
            f.write(envelope.id + "\\n")
        published.append(envelope.id)
        if len(published) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # dies before marking anything sent

    OutboxRelay(Database(url), Outbox(table), publish, service="orders",
                registry=CollectorRegistry()).run_once()
""")


def test_relay_killed_between_publish_and_mark_republishes(store: Store, tmp_path: Path) -> None:
    placed = events(3)
    store.place(*placed)
    sink = tmp_path / "broker.log"
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_RELAY, store.db.url, str(sink)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert sink.read_text().split() == [placed[0].id, placed[1].id]
    assert store.unsent() == [env.id for env in placed]

    relay = relay_for(store, lambda env: sink.open("a").write(env.id + "\n"))
    assert relay.run_once() == 3

    delivered = sink.read_text().split()
    assert delivered == [placed[0].id, placed[1].id] + [env.id for env in placed]
    assert set(delivered) == {env.id for env in placed}  # duplicates, no loss


def test_run_backs_off_while_the_broker_is_down_and_never_dies(store: Store) -> None:
    store.place(*events(2))
    seen: list[str] = []
    outages = [3]

    def publish(envelope: Envelope) -> None:
        if outages[0]:
            outages[0] -= 1
            raise ConnectionError("broker down")
        seen.append(envelope.id)

    registry = CollectorRegistry()
    relay = relay_for(store, publish, registry=registry, min_backoff=0.01, max_backoff=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle": 0.05})
    thread.start()
    try:
        wait_until(lambda: len(seen) == 2, what="the relay to publish after the outage")
        assert thread.is_alive()
        assert metric(relay, registry, "charter_outbox_publish_errors_total") == 3
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert store.unsent() == []


class ReadFailsOnce(Outbox):
    """An outbox whose first read raises (a database error inside a round); counts reads."""

    reads = 0

    def pending(self, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if self.reads == 0:
            self.reads = 1
            raise RuntimeError("database unavailable")
        rows = super().pending(*args, **kwargs)  # type: ignore[arg-type]
        self.reads += 1
        return rows


def test_run_survives_database_errors_and_wake_skips_the_idle_wait(store: Store) -> None:
    seen: list[str] = []
    outbox = ReadFailsOnce(store.table, clock=store.clock.now)
    relay = OutboxRelay(store.db, outbox, lambda env: seen.append(env.id), service="orders",
                        registry=CollectorRegistry(), min_backoff=0.01, max_backoff=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle": 600.0})
    thread.start()
    try:
        # a failed round, then an empty one: the relay now idles for 600 s
        wait_until(lambda: outbox.reads >= 2, what="an empty round after the failed one")
        placed = events(2)
        store.place(*placed)
        relay.wake()
        wait_until(lambda: seen == [env.id for env in placed], what="the woken relay")
        assert outbox.reads == 3 and thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()  # stop cuts the idle wait short too


def test_purge_sent_keeps_unsent_rows(store: Store) -> None:
    old, fresh = events(2), events(1)
    store.place(*old)
    relay_for(store, lambda env: None).run_once()
    store.place(*fresh)
    with store.db.write() as session:
        assert store.outbox.purge_sent(session, timedelta(0)) == 0  # sent at T0, not before
    store.clock.advance(8 * 86400)
    with store.db.write() as session:
        assert store.outbox.purge_sent(session, timedelta(days=7)) == 2
    assert store.unsent() == [fresh[0].id]
