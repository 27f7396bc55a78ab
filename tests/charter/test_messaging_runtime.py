"""``charter.messaging.runtime``: a service's relay and consumers run by one worker.

Two :class:`Messaging` objects for one service stand for two worker processes (their own
:class:`LeaderLock` objects on one lock file, their own broker connections). Each test
runs on the embedded broker and on real RabbitMQ (skip-or-fail rule of
``tests.support.brokers.require_rabbitmq``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Queue
from prometheus_client import CollectorRegistry
from sqlalchemy import Table

from charter import config
from charter.db import Database, service_metadata
from charter.messaging import runtime
from charter.messaging.broker import Broker, BrokerUnavailable, Subscription
from charter.messaging.envelope import Envelope
from charter.messaging.leader import LeaderLock
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.messaging.runtime import Consumes, Messaging
from tests.support.brokers import (
    BACKENDS,
    TrackingBroker,
    temporary_broker,
    unique,
)
from tests.support.polling import wait_until
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
FAST = {"lead_interval": 0.1}


class Service:
    """One service's database (with its outbox) and var dir, shared by its workers."""

    def __init__(self, tmp_path: Path, broker: TrackingBroker, url: str | None = None) -> None:
        self.name = unique("svc").replace(".", "-")
        self.var = tmp_path / "var"
        metadata = service_metadata()
        self.table: Table = add_outbox_table(metadata)
        self.db = Database(url or f"sqlite:///{tmp_path / 'svc.db'}")
        metadata.create_all(self.db.engine)
        self.outbox = Outbox(self.table)
        self.shared = broker
        self.brokers: list[Broker] = []
        self.workers: list[Messaging] = []

    def broker(self) -> Broker:
        """A connection of a worker's own to the test exchange."""
        made = Broker(self.shared.url, exchange=self.shared.exchange_name,
                      transport_options=dict(self.shared.transport_options))
        self.brokers.append(made)
        return made

    def worker(self, consumes: tuple[Consumes, ...] = (), *, outbox: bool = False,
               **options: float) -> Messaging:
        """A worker's Messaging (its own lock object and broker), not started."""
        lock = LeaderLock(f"{self.name}-messaging", self.db.url, var_dir=self.var)
        made = Messaging(self.name, self.db, outbox=self.outbox if outbox else None,
                         consumes=consumes, broker=self.broker(), lock=lock,
                         registry=CollectorRegistry(), **{**FAST, **options})
        self.workers.append(made)
        return made

    def write(self, *envelopes: Envelope) -> None:
        """A use case committing events to the outbox (no explicit notify)."""
        with self.db.write() as session:
            self.outbox.add(session, *envelopes)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for made in self.brokers:
            made.close()
        self.db.dispose()


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with temporary_broker(request.param, tmp_path) as broker:
        made = Service(tmp_path, broker)
        try:
            yield made
        finally:
            made.close()


def probe(service: Service, *bindings: str) -> Subscription:
    """A test queue bound on the service's exchange (deleted with the broker)."""
    sub = Subscription(unique("probe"), bindings, max_attempts=1)
    service.shared.declare(sub)
    return sub


def received(service: Service, sub: Subscription, count: int) -> list[Envelope]:
    """Wait for ``count`` messages in ``sub``'s queue and take them."""
    got: list[Envelope] = []

    def more() -> bool:
        with service.shared.channel() as channel:
            queue = Queue(sub.queue, no_declare=True)(channel)
            while (message := queue.get(no_ack=False)) is not None:
                got.append(Envelope.from_json(message.body))
                message.ack()
        return len(got) >= count

    wait_until(more, timeout=15, interval=0.05, what=f"{count} message(s) in {sub.queue}")
    return got


def leaders(workers: list[Messaging]) -> list[Messaging]:
    return [w for w in workers if w.leading]


def event(n: int, type: str = "Thing") -> Envelope:
    return Envelope.new(type, {"n": n}, source="test")


class Recorder:
    """A handler that records which worker handled which message id."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.by: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def handler(self, worker: str) -> runtime.Handler:
        def handle(envelope: Envelope) -> None:
            with self._lock:
                self.seen[envelope.id] += 1
                self.by.setdefault(worker, []).append(envelope.id)
        return handle


def test_one_of_two_workers_leads_and_each_message_is_handled_once(service: Service) -> None:
    sub = Subscription(unique("work"), ("test.Thing",), max_attempts=1)
    recorder = Recorder()
    first = service.worker((Consumes(sub, recorder.handler("first")),))
    second = service.worker((Consumes(sub, recorder.handler("second")),))
    first.start()
    second.start()
    first.start()  # idempotent
    wait_until(lambda: leaders([first, second]), what="a leader")
    service.shared.declared[sub.queue] = sub  # the leader declared it; delete it after
    leader = leaders([first, second])[0]
    follower = second if leader is first else first
    assert not follower.leading

    batch = [event(n) for n in range(10)]
    for sent in batch:
        service.shared.publish(sent)
    wait_until(lambda: len(recorder.seen) == len(batch), timeout=15, what="10 handled")
    assert set(recorder.seen) == {e.id for e in batch}
    assert set(recorder.seen.values()) == {1}  # once each
    assert list(recorder.by) == ["first" if leader is first else "second"]

    leader.stop()  # the lock is released: the other worker takes over
    assert not leader.leading
    wait_until(lambda: follower.leading, timeout=10, what="the follower to lead")
    more = [event(n) for n in range(10, 15)]
    for sent in more:
        service.shared.publish(sent)
    wait_until(lambda: len(recorder.seen) == 15, timeout=15, what="15 handled")
    assert set(recorder.seen.values()) == {1}
    follower_name = "second" if leader is first else "first"
    assert set(recorder.by[follower_name]) >= {e.id for e in more}


def test_the_relay_publishes_committed_rows_when_woken_after_the_commit(
        service: Service) -> None:
    sub = probe(service, "test.#")
    # A poll every 60 s: only the wake-up after the commit can bring the rows out in time.
    worker = service.worker(outbox=True, idle=60.0)
    worker.start()
    wait_until(lambda: worker.leading, what="the worker to lead")
    batch = [event(n) for n in range(3)]
    service.write(*batch)
    assert [e.id for e in received(service, sub, 3)] == [e.id for e in batch]  # in order
    with service.db.session() as session:
        assert service.outbox.pending(session, 10) == []

    with service.db.write() as session:  # a rolled-back write wakes nobody, sends nothing
        service.outbox.add(session, event(99))
        session.rollback()
    later = event(100)
    service.write(later)
    assert [e.id for e in received(service, sub, 1)] == [later.id]


def test_explicit_notify_wakes_the_relay_and_is_a_no_op_in_a_follower(
        service: Service) -> None:
    sub = probe(service, "test.#")
    leader = service.worker(outbox=True, idle=60.0)
    leader.start()
    wait_until(lambda: leader.leading, what="the worker to lead")
    follower = service.worker(outbox=True, idle=60.0)
    follower.start()
    follower.notify()  # nothing to wake: no relay runs here
    assert not follower.leading
    sent = event(1)
    with service.db.write() as session:  # a row written outside Outbox.add's marking
        session.execute(service.table.insert().values(
            event_id=sent.id, routing_key=sent.routing_key, body=sent.to_json(),
            created_at=sent.occurred_at, attempts=0))
    leader.notify()
    assert [e.id for e in received(service, sub, 1)] == [sent.id]


def test_metrics_say_who_leads(service: Service) -> None:
    first, second = service.worker(), service.worker()
    first.start()
    second.start()
    wait_until(lambda: leaders([first, second]), what="a leader")
    values = {w: w.registry.get_sample_value("charter_messaging_leader",
                                             {"service": service.name})
              for w in (first, second)}
    leader = leaders([first, second])[0]
    follower = second if leader is first else first
    assert (values[leader], values[follower]) == (1.0, 0.0)
    leader.stop()
    assert leader.registry.get_sample_value("charter_messaging_leader",
                                            {"service": service.name}) == 0.0
    forwarded = CollectorRegistry()
    forwarded.register(leader.collector())
    assert forwarded.get_sample_value("charter_messaging_leader",
                                      {"service": service.name}) == 0.0


def test_a_killed_leader_hands_over(service: Service, tmp_path: Path) -> None:
    """The leader is another process, killed with SIGKILL: the kernel drops its lock."""
    script = textwrap.dedent(f"""
        import sys, threading
        from pathlib import Path
        from charter.db import Database
        from charter.messaging.broker import Broker
        from charter.messaging.leader import LeaderLock
        from charter.messaging.runtime import Messaging
        db = Database({service.db.url!r})
        lock = LeaderLock({service.name + '-messaging'!r}, db.url,
                          var_dir=Path({str(service.var)!r}))
        broker = Broker({service.shared.url!r}, exchange={service.shared.exchange_name!r})
        m = Messaging({service.name!r}, db, broker=broker, lock=lock, lead_interval=0.1)
        m.start()
        while not m.leading:
            threading.Event().wait(0.05)
        print("leading", flush=True)
        threading.Event().wait(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"leading"
        worker = service.worker()
        worker.start()
        threading.Event().wait(0.5)  # several lock attempts while the child holds it
        assert not worker.leading
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: worker.leading, timeout=10, what="the survivor to lead")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_on_postgres_the_advisory_lock_picks_one_leader_and_hands_over(
        postgres_url: str, tmp_path: Path) -> None:
    with temporary_broker("embedded", tmp_path) as broker:
        service = Service(tmp_path, broker, postgres_url)
        try:
            first, second = service.worker(outbox=True), service.worker(outbox=True)
            assert first.lock.mechanism == "postgres-advisory"
            first.start()
            second.start()
            wait_until(lambda: leaders([first, second]), what="a leader")
            leader = leaders([first, second])[0]
            follower = second if leader is first else first
            threading.Event().wait(0.3)  # several attempts by the follower meanwhile
            assert leaders([first, second]) == [leader]
            sub = probe(service, "test.#")
            service.write(sent := event(1))
            assert [e.id for e in received(service, sub, 1)] == [sent.id]
            leader.stop()
            wait_until(lambda: follower.leading, timeout=10, what="the follower to lead")
            service.write(again := event(2))
            assert [e.id for e in received(service, sub, 1)] == [again.id]
        finally:
            service.close()


def test_readiness_fails_for_an_unreachable_broker_without_leaking_the_password(
        tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    down = Broker(f"amqp://charter:s3cret-pass@127.0.0.1:{free_port()}//", connect_timeout=2)
    lock = LeaderLock("down-messaging", db.url, var_dir=tmp_path)
    messaging = Messaging("down", db, broker=down, lock=lock, registry=CollectorRegistry(),
                          lead_interval=0.1)
    messaging.start()  # a down broker does not stop the start
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            messaging.check_ready()
        assert "s3cret-pass" not in str(caught.value)
        with pytest.raises(BrokerUnavailable):  # cached for a second, same answer
            messaging.check_ready()
    finally:
        messaging.stop()
        down.close()
        db.dispose()


def test_readiness_is_ok_when_the_broker_answers(service: Service) -> None:
    worker = service.worker()
    worker.check_ready()  # no exception, and without being started


def test_a_missing_broker_setting_fails_readiness_not_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.delenv("AMQP_URL", raising=False)
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    lock = LeaderLock("nobroker-messaging", db.url, var_dir=tmp_path)
    messaging = Messaging("nobroker", db, lock=lock, registry=CollectorRegistry())
    messaging.start()
    try:
        with pytest.raises(BrokerUnavailable, match="AMQP_URL must be set"):
            messaging.check_ready()
        assert not messaging.leading
    finally:
        messaging.stop()
        db.dispose()


@pytest.mark.parametrize(("value", "expected"), [
    (None, True), ("on", True), ("1", True), ("off", False), ("OFF", False), ("0", False)])
def test_charter_messaging_switch(value: str | None, expected: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv(runtime.ENV, raising=False)
    else:
        monkeypatch.setenv(runtime.ENV, value)
    assert runtime.enabled() is expected


def test_charter_messaging_typo_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.ENV, "of")
    with pytest.raises(config.ConfigError, match=runtime.ENV):
        runtime.enabled()


def test_one_consumes_per_queue(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    sub = Subscription("twice", ("a.b",))
    with pytest.raises(ValueError, match="one Consumes per queue"):
        Messaging("svc", db, consumes=(Consumes(sub, print), Consumes(sub, print)),
                  lock=LeaderLock("svc-messaging", db.url, var_dir=tmp_path),
                  registry=CollectorRegistry())
    db.dispose()


def test_charter_up_passes_amqp_url_to_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    from charterctl import runner
    from charterctl.registry import COMPONENTS

    monkeypatch.setenv("AMQP_URL", "amqp://u:p@rabbit.example:5672/charter")
    env = runner.child_env(COMPONENTS["orders"], 1)
    assert env["AMQP_URL"] == "amqp://u:p@rabbit.example:5672/charter"
