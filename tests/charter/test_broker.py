"""The broker: topology, publishing with headers, confirms, depth and health — against
real RabbitMQ and the embedded broker (each test runs on both)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from amqp.exceptions import ChannelError as AMQPChannelError
from kombu import Queue

from charter.messaging import embedded
from charter.messaging.broker import (
    Broker,
    BrokerUnavailable,
    Subscription,
    UnknownQueue,
)
from charter.messaging.consumer import Consumer
from charter.messaging.envelope import Envelope
from tests.support.brokers import BACKENDS, TrackingBroker, temporary_broker, unique
from tests.support.races import run_threads
from tests.support.servers import free_port


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackingBroker]:
    with temporary_broker(request.param, tmp_path) as made:
        yield made


def _envelope(type: str = "OrderPlaced", source: str = "orders") -> Envelope:
    return Envelope.new(type, {"order_id": "o-1", "total": "12.50"}, source=source,
                        correlation_id="corr-123", saga_id="saga-9",
                        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def test_round_trip_carries_the_envelope_and_its_headers(broker: TrackingBroker) -> None:
    sub = Subscription(unique("roundtrip"), ("orders.#",))
    broker.declare(sub)
    sent = _envelope()
    broker.publish(sent)

    with broker.channel() as channel:
        message = Queue(sub.queue, no_declare=True)(channel).get(no_ack=False)
        assert message is not None
        assert message.headers["correlation_id"] == "corr-123"
        assert message.headers["traceparent"] == sent.traceparent
        assert message.headers["saga_id"] == "saga-9"
        assert message.properties["message_id"] == sent.id
        assert message.properties["delivery_mode"] == 2  # persistent
        assert message.delivery_info["routing_key"] == "orders.OrderPlaced"
        # not acked: back in the queue when the channel closes

    received: list[Envelope] = []
    assert Consumer(broker, sub, received.append, service="test").drain(5) == 1
    assert received == [sent]


def test_topic_routing_reaches_only_matching_queues(broker: TrackingBroker) -> None:
    orders = Subscription(unique("orders"), ("orders.*",))
    carts = Subscription(unique("carts"), ("cart.#", "orders.OrderCancelled"))
    broker.declare(orders)
    broker.declare(carts)

    broker.publish(_envelope("OrderPlaced"))                 # orders only
    broker.publish(_envelope("OrderCancelled"))              # both
    broker.publish(_envelope("Item.Added", source="cart"))   # carts: cart.Item.Added
    broker.publish(_envelope("PaymentTaken", source="payments"))  # nobody

    assert broker.queue_depth(orders.queue) == 2
    assert broker.queue_depth(carts.queue) == 2


def test_declare_is_idempotent_and_creates_delay_queues_and_dlq(
        broker: TrackingBroker) -> None:
    sub = Subscription(unique("topology"), ("orders.#",), max_attempts=3,
                       backoff=(0.5, 1.0, 30.0))
    broker.declare(sub)
    broker.declare(sub)
    assert sub.tiers() == (0.5, 1.0)  # two retries need two delay queues
    for name in (sub.queue, f"{sub.queue}.retry.1", f"{sub.queue}.retry.2", sub.dlq):
        assert broker.queue_depth(name) == 0
    with pytest.raises(UnknownQueue):
        broker.queue_depth(f"{sub.queue}.retry.3")
    with pytest.raises(UnknownQueue):
        broker.queue_depth(unique("missing"))
    broker.ping()  # the shared connection survives a 404


def test_publish_from_many_threads_loses_nothing(broker: TrackingBroker) -> None:
    sub = Subscription(unique("threads"), ("orders.#",))
    broker.declare(sub)

    def work(i: int) -> None:
        for n in range(25):
            broker.publish(_envelope(f"Event{i}x{n}"))

    results = run_threads(8, work, timeout=60)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert broker.queue_depth(sub.queue) == 200


def test_unreachable_rabbitmq_raises_broker_unavailable() -> None:
    port = free_port()
    broker = Broker(f"amqp://charter:s3cret-pw@127.0.0.1:{port}//", connect_timeout=2)
    with pytest.raises(BrokerUnavailable) as raised:
        broker.publish(_envelope())
    assert "s3cret-pw" not in str(raised.value)  # no secret in the message
    with pytest.raises(BrokerUnavailable):
        broker.ping()
    with pytest.raises(BrokerUnavailable):
        broker.declare(Subscription("q", ("orders.#",)))


def test_unusable_embedded_file_raises_broker_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    broker = Broker(embedded.url_for(blocker / "broker.db"))
    with pytest.raises(BrokerUnavailable):
        broker.publish(_envelope())
    with pytest.raises(BrokerUnavailable):
        broker.ping()


def test_from_config_uses_amqp_url_else_the_embedded_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    default = Broker.from_config()
    assert default.url == embedded.url_for(tmp_path / "broker.db")
    assert not default.amqp
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@rabbit.example:5672/charter")
    configured = Broker.from_config()
    assert configured.url == "amqp://u:p@rabbit.example:5672/charter"
    assert configured.amqp
    assert configured.transport_options["confirm_publish"] is True
    assert "u:p@" not in configured.safe_url


def test_outside_development_a_missing_amqp_url_fails_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charter.config import ConfigError

    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(ConfigError, match="AMQP_URL must be set"):
        Broker.from_config()
    monkeypatch.setenv("AMQP_URL", embedded.url_for(tmp_path / "broker.db"))
    assert Broker.from_config().url == embedded.url_for(tmp_path / "broker.db")


def test_subscription_tiers_and_validation() -> None:
    sub = Subscription("loyalty", ("orders.#",), max_attempts=10, backoff=(1.0, 5.0))
    assert [sub.retry_queue(n) for n in (2, 3, 4, 9)] == [
        "loyalty.retry.1", "loyalty.retry.2", "loyalty.retry.2", "loyalty.retry.2"]
    assert sub.dlq == "loyalty.dlq"
    assert Subscription("once", ("a.b",), max_attempts=1, backoff=()).tiers() == ()
    for bad in (dict(queue="x.dlq"), dict(queue="x.retry.1"), dict(queue=""),
                dict(max_attempts=0), dict(backoff=()), dict(backoff=(1.0, -1.0))):
        kwargs: dict = {"queue": "ok", "bindings": ("a.#",), **bad}
        with pytest.raises(ValueError):
            Subscription(**kwargs)


def test_publish_reconnects_after_the_connection_broke(tmp_path: Path) -> None:
    with temporary_broker("rabbitmq", tmp_path) as broker:
        sub = Subscription(unique("reconnect"), ("orders.#",))
        broker.declare(sub)
        broker.publish(_envelope())
        assert broker._conn is not None
        broker._conn.connection.sock.shutdown(socket.SHUT_RDWR)  # the broker went away
        broker.publish(_envelope())  # a new connection, no error for the caller
        assert broker.queue_depth(sub.queue) == 2


def test_redeclaring_another_back_off_is_refused_clearly(tmp_path: Path) -> None:
    with temporary_broker("rabbitmq", tmp_path) as broker:
        name = unique("ttl")
        broker.declare(Subscription(name, ("orders.#",), max_attempts=2, backoff=(0.2,)))
        with pytest.raises(AMQPChannelError, match="x-message-ttl"):
            broker.declare(Subscription(name, ("orders.#",), max_attempts=2, backoff=(0.5,)))
