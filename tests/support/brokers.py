"""Real brokers for the messaging tests: RabbitMQ and the embedded (SQLite) broker.

``require_rabbitmq()`` follows the skip-or-fail rule of :mod:`tests.support.databases`:
on a laptop without RabbitMQ the test is skipped with the reason; with ``CI=true`` it
fails. :func:`temporary_broker` gives a :class:`TrackingBroker` on a unique exchange whose
queues (and the exchange) are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kombu import Connection

from charter.messaging import embedded
from charter.messaging.broker import Broker, Subscription
from tests.support.databases import unavailable

AMQP_TEST_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKENDS = ("embedded", "rabbitmq")
# Visibility timeout of the embedded broker in tests (a killed consumer's message
# comes back this fast).
TEST_VISIBILITY_TIMEOUT = 1.0


def require_rabbitmq() -> None:
    """Skip (laptop) or fail (``CI=true``) unless RabbitMQ accepts a connection."""
    conn = Connection(AMQP_TEST_URL, connect_timeout=3)
    try:
        conn.connect()
    except Exception as exc:  # refused, auth, timeout, …
        unavailable("RabbitMQ at " + AMQP_TEST_URL.split("@")[-1], exc)
    finally:
        conn.release()


def backend_url(kind: str, tmp_path: Path) -> str:
    """The URL of a broker of ``kind`` (``embedded``: a SQLite file under ``tmp_path``)."""
    if kind == "rabbitmq":
        require_rabbitmq()
        return AMQP_TEST_URL
    if kind == "embedded":
        return embedded.url_for(tmp_path / "broker.db")
    raise ValueError(kind)


def backend_options(kind: str) -> dict[str, Any]:
    """Transport options for tests (a short visibility timeout on the embedded broker)."""
    return {"visibility_timeout": TEST_VISIBILITY_TIMEOUT} if kind == "embedded" else {}


def unique(name: str) -> str:
    """A queue or exchange name no other test uses."""
    return f"t.{name}.{uuid.uuid4().hex[:10]}"


class TrackingBroker(Broker):
    """A :class:`Broker` that remembers what it declared, to delete it afterwards."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.declared: dict[str, Subscription] = {}

    def declare_on(self, conn: Connection, sub: Subscription) -> None:
        self.declared[sub.queue] = sub
        super().declare_on(conn, sub)

    def cleanup(self) -> None:
        for sub in list(self.declared.values()):
            self.delete(sub)
        self.delete_exchange()
        self.close()


@contextmanager
def temporary_broker(kind: str, tmp_path: Path) -> Iterator[TrackingBroker]:
    """A broker of ``kind`` on a unique exchange; its queues are deleted at exit."""
    broker = TrackingBroker(backend_url(kind, tmp_path), exchange=unique("exchange"),
                            transport_options=backend_options(kind))
    try:
        yield broker
    finally:
        broker.cleanup()
