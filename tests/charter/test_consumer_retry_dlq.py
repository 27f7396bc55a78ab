"""Consumers: retries with back-off, the dead-letter queue, replay, crash redelivery and
the reconnecting loop — against real RabbitMQ and the embedded broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu import Exchange, Producer
from prometheus_client import CollectorRegistry

from charter.messaging import dlq
from charter.messaging.broker import Broker, Subscription
from charter.messaging.consumer import Consumer, PoisonMessage, current_attempt
from charter.messaging.envelope import Envelope
from charter.observability import logs
from tests.support.brokers import BACKENDS, TrackingBroker, temporary_broker, unique
from tests.support.polling import wait_until
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TIERS = (0.2, 0.3)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(backend: str, tmp_path: Path) -> Iterator[TrackingBroker]:
    with temporary_broker(backend, tmp_path) as made:
        yield made


def _sub(name: str, max_attempts: int = 3) -> Subscription:
    return Subscription(unique(name), ("orders.#",), max_attempts=max_attempts,
                        backoff=TIERS)


def _event(type: str = "OrderPlaced") -> Envelope:
    return Envelope.new(type, {"order_id": "o-1"}, source="orders", correlation_id="c-1",
                        saga_id="s-1")


def _drain_until(consumer: Consumer, done: Callable[[], bool], timeout: float = 15) -> None:
    """Drain in short rounds until ``done()`` (robust to slow delay tiers on a busy box)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        consumer.drain(2, idle=0.4)
    consumer.drain(1, idle=0.2)  # anything unexpected still pending shows up too


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_fails_twice_then_succeeds_on_attempt_3_after_back_off(
        broker: TrackingBroker) -> None:
    sub = _sub("flaky", max_attempts=4)
    calls: list[tuple[int, float]] = []

    def handler(envelope: Envelope) -> None:
        calls.append((current_attempt(), time.monotonic()))
        if len(calls) < 3:
            raise ConnectionError("catalog down")

    registry = CollectorRegistry()
    consumer = Consumer(broker, sub, handler, service="loyalty", registry=registry)
    broker.declare(sub)
    broker.publish(_event())
    _drain_until(consumer, lambda: len(calls) >= 3)

    assert [attempt for attempt, _ in calls] == [1, 2, 3]
    assert calls[1][1] - calls[0][1] >= TIERS[0] * 0.9  # held in the first delay tier
    assert calls[2][1] - calls[1][1] >= TIERS[1] * 0.9  # then in the second
    assert broker.queue_depth(sub.dlq) == 0
    assert broker.queue_depth(sub.queue) == 0
    labels = {"service": "loyalty", "queue": sub.queue}
    assert _sample(registry, "charter_messages_consumed_total", outcome="ok", **labels) == 1
    assert _sample(registry, "charter_messages_consumed_total", outcome="retried",
                   **labels) == 2
    assert _sample(registry, "charter_message_retries_total", **labels) == 2


def test_always_failing_goes_to_the_dlq_after_max_attempts(broker: TrackingBroker) -> None:
    sub = _sub("doomed", max_attempts=3)
    seen: list[int] = []

    def handler(envelope: Envelope) -> None:
        seen.append(current_attempt())
        raise ValueError("amount 42 is not a decimal")

    registry = CollectorRegistry()
    consumer = Consumer(broker, sub, handler, service="loyalty", registry=registry)
    broker.declare(sub)
    sent = _event()
    broker.publish(sent)
    _drain_until(consumer, lambda: len(seen) >= 3)

    assert seen == [1, 2, 3]
    assert broker.queue_depth(sub.queue) == 0
    assert broker.queue_depth(sub.dlq) == 1
    [letter] = dlq.peek(broker, sub.queue)
    assert letter.id == sent.id
    assert letter.type == "OrderPlaced"
    assert letter.attempts == 3
    assert letter.reason == "max-attempts"
    assert letter.last_error == "ValueError: amount 42 is not a decimal"
    assert letter.routing_key == "orders.OrderPlaced"
    assert broker.queue_depth(sub.dlq) == 1  # peeking consumed nothing
    labels = {"service": "loyalty", "queue": sub.queue}
    assert _sample(registry, "charter_messages_consumed_total", outcome="dead_lettered",
                   **labels) == 1
    assert _sample(registry, "charter_dlq_messages", **labels) == 1
    assert _sample(registry, "charter_consumer_lag", **labels) == 0


def test_a_body_that_is_not_an_envelope_goes_to_the_dlq_at_once(
        broker: TrackingBroker) -> None:
    sub = _sub("garbage")
    called: list[Envelope] = []
    consumer = Consumer(broker, sub, called.append, service="test")
    broker.declare(sub)
    with broker.channel() as channel:
        Producer(channel, exchange=Exchange(broker.exchange_name, "topic", durable=True),
                 auto_declare=False).publish(b"\xff not json", routing_key="orders.Junk",
                                             content_type="application/json",
                                             content_encoding="binary", message_id="junk-1")
    assert consumer.drain(10, idle=0.5) == 1
    assert called == []
    [letter] = dlq.peek(broker, sub.queue)
    assert (letter.id, letter.reason, letter.attempts) == ("junk-1", "invalid-envelope", 1)
    assert letter.last_error.startswith("InvalidEnvelope")


def test_poison_message_from_the_handler_skips_the_retries(broker: TrackingBroker) -> None:
    sub = _sub("poison", max_attempts=5)
    calls: list[int] = []

    def handler(envelope: Envelope) -> None:
        calls.append(current_attempt())
        raise PoisonMessage("unknown currency XXX")

    consumer = Consumer(broker, sub, handler, service="test")
    broker.declare(sub)
    broker.publish(_event())
    consumer.drain(10, idle=0.5)
    assert calls == [1]
    [letter] = dlq.peek(broker, sub.queue)
    assert letter.reason == "poison"
    assert "unknown currency XXX" in letter.last_error


def test_replay_after_the_fix_is_processed_from_attempt_1(broker: TrackingBroker) -> None:
    sub = _sub("replay", max_attempts=2)
    fixed = threading.Event()
    done: list[tuple[str, int]] = []

    def handler(envelope: Envelope) -> None:
        if not fixed.is_set():
            raise KeyError("missing product")
        done.append((envelope.id, current_attempt()))

    consumer = Consumer(broker, sub, handler, service="test")
    broker.declare(sub)
    first, second = _event("A"), _event("B")
    broker.publish(first)
    broker.publish(second)
    _drain_until(consumer, lambda: broker.queue_depth(sub.dlq) == 2)
    assert broker.queue_depth(sub.dlq) == 2

    fixed.set()
    assert dlq.replay(broker, sub.queue, message_id=second.id) == 1
    assert broker.queue_depth(sub.dlq) == 1  # the other one stays
    consumer.drain(10, idle=0.5)
    assert done == [(second.id, 1)]
    assert dlq.replay(broker, f"{sub.queue}.dlq") == 1
    consumer.drain(10, idle=0.5)
    assert done == [(second.id, 1), (first.id, 1)]
    assert broker.queue_depth(sub.dlq) == 0


def test_handler_sees_correlation_and_saga_ids(broker: TrackingBroker) -> None:
    sub = _sub("context")
    seen: list[tuple[str | None, str | None]] = []
    consumer = Consumer(broker, sub, lambda e: seen.append(
        (logs.correlation_id.get(), logs.saga_id.get())), service="test")
    broker.declare(sub)
    broker.publish(_event())
    consumer.drain(10, idle=0.5)
    assert seen == [("c-1", "s-1")]
    assert logs.correlation_id.get() is None and logs.saga_id.get() is None


_CHILD = """
import pathlib, sys, threading, time
from charter.messaging.broker import Broker, Subscription
from charter.messaging.consumer import Consumer
url, exchange, queue, marker, vt = sys.argv[1:6]
options = {"visibility_timeout": float(vt)} if vt != "-" else {}
broker = Broker(url, exchange=exchange, transport_options=options)
sub = Subscription(queue, ("orders.#",), max_attempts=3, backoff=(0.2, 0.3))
def handler(envelope):
    pathlib.Path(marker).write_text(envelope.id)
    time.sleep(120)  # killed here, before the ack
Consumer(broker, sub, handler, service="child").run(threading.Event())
"""


def test_a_consumer_killed_before_its_ack_gets_the_message_delivered_again(
        broker: TrackingBroker, backend: str, tmp_path: Path) -> None:
    sub = _sub("killed")
    broker.declare(sub)
    sent = _event()
    broker.publish(sent)
    marker = tmp_path / "handling"
    vt = str(broker.transport_options.get("visibility_timeout", "-"))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, broker.url, broker.exchange_name,
                              sub.queue, str(marker), vt], cwd=ROOT)
    try:
        wait_until(lambda: marker.exists() and marker.read_text(), timeout=20,
                   what="the child to start handling")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert marker.read_text() == sent.id

    received: list[Envelope] = []
    consumer = Consumer(broker, sub, received.append, service="test")
    deadline = time.monotonic() + 15
    while not received and time.monotonic() < deadline:
        consumer.drain(3, idle=0.5)
    assert received == [sent]  # delivered again (a duplicate), never lost
    assert broker.queue_depth(sub.dlq) == 0


def test_run_survives_handler_errors_and_stops_on_request(broker: TrackingBroker) -> None:
    sub = _sub("loop", max_attempts=1)
    handled: list[str] = []

    def handler(envelope: Envelope) -> None:
        if envelope.type == "Bad":
            raise RuntimeError("bug")
        handled.append(envelope.type)

    broker.declare(sub)
    stop = threading.Event()
    thread = threading.Thread(target=Consumer(broker, sub, handler, service="t").run,
                              args=(stop,))
    thread.start()
    try:
        for type in ("Bad", "Good1", "Bad", "Good2"):
            broker.publish(_event(type))
        wait_until(lambda: len(handled) == 2, timeout=15, what="both good messages")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert handled == ["Good1", "Good2"]
    assert broker.queue_depth(sub.dlq) == 2


def test_run_keeps_retrying_while_the_broker_is_down() -> None:
    down = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}//", connect_timeout=1)
    stop = threading.Event()
    consumer = Consumer(down, Subscription("q", ("orders.#",)), lambda e: None,
                        service="t")
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()  # did not die on the connection error
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_run_reconnects_after_the_connection_broke(tmp_path: Path) -> None:
    with temporary_broker("rabbitmq", tmp_path) as broker:
        sub = _sub("reconnect")
        handled: list[str] = []
        consumer = Consumer(broker, sub, lambda e: handled.append(e.type), service="t")
        broker.declare(sub)
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,))
        thread.start()
        try:
            broker.publish(_event("Before"))
            wait_until(lambda: handled == ["Before"], timeout=10, what="the first message")
            session = consumer._session
            assert session is not None
            session.conn.connection.sock.shutdown(socket.SHUT_RDWR)  # connection lost
            broker.publish(_event("After"))
            wait_until(lambda: handled == ["Before", "After"], timeout=15,
                       what="the message after reconnecting")
            assert consumer._session is not session
        finally:
            stop.set()
            thread.join(10)
