"""The embedded (SQLite) kombu transport: nothing delivered is lost, acks delete,
unacked deliveries come back after the visibility timeout, bindings and delay queues
work across connections and processes."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from charter.messaging import embedded
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return embedded.url_for(tmp_path / "broker.db")


@pytest.fixture
def conn(url: str) -> Iterator[Connection]:
    with Connection(url, transport_options={"visibility_timeout": 0.5}) as connection:
        yield connection


def _publish(url: str, body: str, *, exchange: str = "", routing_key: str) -> None:
    with Connection(url) as other:
        ex = Exchange(exchange, "topic", durable=True) if exchange else Exchange("")
        Producer(other.channel(), exchange=ex).publish(body, routing_key=routing_key,
                                                       content_type="application/json")


def _rows(tmp_path: Path, queue: str) -> int:
    db = sqlite3.connect(tmp_path / "broker.db")
    try:
        return int(db.execute("SELECT COUNT(*) FROM charter_message WHERE queue = ?",
                              (queue,)).fetchone()[0])
    finally:
        db.close()


def _declare(conn: Connection, queue: str, **arguments: object) -> None:
    Queue(queue, durable=True, queue_arguments=arguments or None)(conn.channel()).declare()


@pytest.mark.parametrize(("pattern", "key", "hit"), [
    ("orders.#", "orders", True),
    ("orders.#", "orders.OrderPlaced", True),
    ("orders.#", "orders.a.b", True),
    ("orders.*", "orders.OrderPlaced", True),
    ("orders.*", "orders", False),
    ("orders.*", "orders.a.b", False),
    ("#", "anything.at.all", True),
    ("*.OrderPlaced", "orders.OrderPlaced", True),
    ("#.Placed", "orders.Placed", True),
    ("orders.Placed", "orders.Placedx", False),
])
def test_topic_matching_follows_rabbitmq(pattern: str, key: str, hit: bool) -> None:
    assert embedded.topic_matches(pattern, key) is hit


def test_url_and_path_round_trip(tmp_path: Path) -> None:
    url = embedded.url_for(tmp_path / "x" / "broker.db")
    assert url.startswith("embedded+sqlite:///")
    assert embedded.path_of(url.split("+", 1)[1]) == tmp_path / "x" / "broker.db"
    with pytest.raises(ValueError):
        embedded.path_of("sqlite:///")


def test_ack_deletes_the_row_and_nothing_is_lost_before(conn: Connection, url: str,
                                                        tmp_path: Path) -> None:
    _declare(conn, "q")
    _publish(url, '{"n": 1}', routing_key="q")
    channel = conn.channel()
    message = Queue("q", no_declare=True)(channel).get(no_ack=False)
    assert message is not None and message.body == b'{"n": 1}'
    assert _rows(tmp_path, "q") == 1  # delivered, kept until the ack
    message.ack()
    assert _rows(tmp_path, "q") == 0


def test_unacked_delivery_comes_back_after_the_visibility_timeout(
        url: str, tmp_path: Path) -> None:
    with Connection(url, transport_options={"visibility_timeout": 0.5}) as first:
        _declare(first, "q")
        _publish(url, '{"n": 1}', routing_key="q")
        crashed = first.channel()
        crashed.do_restore = False  # as if the process died: no restore on close
        taken = crashed.basic_get("q")
        assert taken is not None
        with Connection(url, transport_options={"visibility_timeout": 0.5}) as second:
            other = second.channel()
            assert other.basic_get("q") is None  # still invisible
            again = wait_until(lambda: other.basic_get("q"), timeout=5,
                               what="redelivery after the visibility timeout")
            assert again.body == b'{"n": 1}'
            assert again.delivery_info["redelivered"] is True
            taken.ack()  # the stale delivery's ack must not delete the new claim
            assert _rows(tmp_path, "q") == 1
            again.ack()
            assert _rows(tmp_path, "q") == 0


def test_reject_and_close_put_messages_back(conn: Connection, url: str,
                                            tmp_path: Path) -> None:
    _declare(conn, "q")
    for n in range(3):
        _publish(url, f'{{"n": {n}}}', routing_key="q")
    channel = conn.channel()
    first = channel.basic_get("q")
    first.reject(requeue=True)
    assert channel.queue_declare("q", passive=True).message_count == 3
    dropped = channel.basic_get("q")
    dropped.reject(requeue=False)
    assert _rows(tmp_path, "q") == 2
    with Connection(url) as other:
        held = other.channel()
        assert held.basic_get("q") is not None
        assert held.basic_get("q") is not None
        assert held.queue_declare("q", passive=True).message_count == 0
        held.close()  # unacked: ready again at once
    assert conn.channel().queue_declare("q", passive=True).message_count == 2


def test_delay_queue_holds_then_dead_letters_to_its_target(conn: Connection, url: str
                                                           ) -> None:
    _declare(conn, "work")
    _declare(conn, "work.retry.1", **{"x-message-ttl": 400, "x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": "work"})
    _publish(url, '{"retry": true}', routing_key="work.retry.1")
    channel = conn.channel()
    assert channel.basic_get("work") is None  # not due yet
    assert channel.queue_declare("work", passive=True).message_count == 0
    due = wait_until(lambda: channel.basic_get("work"), timeout=5, what="the delayed message")
    assert due.body == b'{"retry": true}'
    assert due.delivery_info["routing_key"] == "work"
    due.ack()


def test_bindings_route_from_another_connection(conn: Connection, url: str) -> None:
    channel = conn.channel()
    exchange = Exchange("events", "topic", durable=True)
    Queue("billing", exchange, routing_key="orders.#", durable=True)(channel).declare()
    _publish(url, '{"k": 1}', exchange="events", routing_key="orders.OrderPlaced")
    _publish(url, '{"k": 2}', exchange="events", routing_key="cart.ItemAdded")
    assert channel.queue_declare("billing", passive=True).message_count == 1


def test_bindings_route_from_another_process(conn: Connection, url: str) -> None:
    channel = conn.channel()
    exchange = Exchange("events", "topic", durable=True)
    Queue("audit", exchange, routing_key="#", durable=True)(channel).declare()
    code = ("import sys; from kombu import Connection, Exchange, Producer; "
            "import charter.messaging.embedded; "
            "c = Connection(sys.argv[1]); "
            "Producer(c.channel(), exchange=Exchange('events', 'topic', durable=True))"
            ".publish('{}', routing_key='payments.Captured'); c.release()")
    subprocess.run([sys.executable, "-c", code, url], cwd=ROOT, check=True, timeout=30)
    message = channel.basic_get("audit")
    assert message is not None
    assert message.delivery_info["routing_key"] == "payments.Captured"


def test_competing_consumers_never_share_a_message(url: str) -> None:
    with Connection(url) as setup:
        _declare(setup, "shared")
    for n in range(60):
        _publish(url, f'{{"n": {n}}}', routing_key="shared")
    taken: list[list[bytes]] = [[], [], []]

    def work(i: int) -> None:
        with Connection(url) as mine:
            channel = mine.channel()
            while (message := channel.basic_get("shared")) is not None:
                taken[i].append(message.body)
                message.ack()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [body for bodies in taken for body in bodies]
    assert len(everything) == 60
    assert len(set(everything)) == 60


def test_purge_takes_ready_messages_only(conn: Connection, url: str, tmp_path: Path
                                         ) -> None:
    _declare(conn, "p")
    for n in range(3):
        _publish(url, f'{{"n": {n}}}', routing_key="p")
    channel = conn.channel()
    held = channel.basic_get("p")
    assert channel.queue_purge("p") == 2
    assert _rows(tmp_path, "p") == 1  # the unacked one stays, as on RabbitMQ
    held.ack()
    assert _rows(tmp_path, "p") == 0


def test_passive_declare_of_a_missing_queue_fails(conn: Connection) -> None:
    from kombu.exceptions import ChannelError

    with pytest.raises(ChannelError):
        conn.channel().queue_declare("nowhere", passive=True)
    assert "nowhere" not in conn.channel().queue_names()


def test_polling_picks_up_a_message_published_later(conn: Connection, url: str) -> None:
    _declare(conn, "late")
    got: list[bytes] = []

    def on_message(message: Any) -> None:
        got.append(message.body)
        message.ack()

    consumer = conn.Consumer(Queue("late", no_declare=True), on_message=on_message)
    consumer.consume()
    threading.Timer(0.2, _publish, args=(url, '{"late": 1}'),
                    kwargs={"routing_key": "late"}).start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
    assert got == [b'{"late": 1}']
