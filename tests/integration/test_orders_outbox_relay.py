"""Orders' outbox reaches the broker: an order confirmed over HTTP is published as
``orders.OrderConfirmed`` by the worker leading ``orders-messaging``.

Orders runs in-process under uvicorn (a thread) with in-memory fakes of the services it
calls, on a SQLite file and on PostgreSQL (the advisory lock), against the embedded
broker and real RabbitMQ (skip-or-fail rule of ``tests.support.brokers``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu import Queue
from prometheus_client import CollectorRegistry

from charter.db import Database
from charter.messaging.broker import Broker, Subscription
from charter.messaging.leader import LeaderLock
from charter.security.revocation import RevocationPoller
from charter.testing import TokenFactory
from services.orders import app as orders_app
from services.orders.app import create_app, orders_messaging
from tests.orders.orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from tests.orders.orders_support import keyed, payment_for
from tests.support.apps import app_context
from tests.support.brokers import BACKENDS, TrackingBroker, temporary_broker, unique
from tests.support.plugin import bearer
from tests.support.polling import wait_until
from tests.support.servers import ThreadServer, free_port

EMAIL = "alice.private@example.com"


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackingBroker]:
    with temporary_broker(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("orders", any_database_url)


def orders_app_with(db: Database, tokens: TokenFactory, broker: Broker, var: Path,
                    payments: InMemoryPayments) -> tuple[Any, Any]:
    """The orders app with fakes and its messaging (not started), as create_asgi builds it."""
    catalog = InMemoryCatalog()
    catalog.put(1, price=2490, on_hand=10)
    messaging = orders_messaging(
        db, broker=broker, lock=LeaderLock("orders-messaging", db.url, var_dir=var),
        registry=CollectorRegistry(), lead_interval=0.1, idle=60.0)  # no poll: the wake-up
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=InMemoryCart(),
                     payments=payments, messaging=messaging)
    return app, messaging


def take(broker: TrackingBroker, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message waiting in ``queue`` as (routing key, envelope document), acked."""
    got = []
    with broker.channel() as channel:
        q = Queue(queue, no_declare=True)(channel)
        while (message := q.get(no_ack=False)) is not None:
            got.append((message.delivery_info["routing_key"], json.loads(message.body)))
            message.ack()
    return got


def test_a_confirmed_order_is_published_as_order_confirmed(
        db: Database, broker: TrackingBroker, tokens: TokenFactory, tmp_path: Path,
        asgi_server: Callable[..., ThreadServer]) -> None:
    probe = Subscription(unique("orders-probe"), ("orders.*",), max_attempts=1)
    broker.declare(probe)
    worker = Broker(broker.url, exchange=broker.exchange_name,
                    transport_options=dict(broker.transport_options))
    payments = InMemoryPayments()
    app, messaging = orders_app_with(db, tokens, worker, tmp_path, payments)
    messaging.start()
    try:
        wait_until(lambda: messaging.leading, what="orders to lead its messaging")
        server = asgi_server(app)
        alice = bearer(tokens.token(sub="alice", scope="orders:read orders:write",
                                    role="customer", email=EMAIL))
        with httpx.Client(base_url=server.url, timeout=10) as http:
            ready = http.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["broker"] == "ok"
            order = http.post("/v1/orders", headers=keyed(alice),
                              json={"items": [{"product_id": 1, "quantity": 2}]}).json()
            pay = payments.put(payment_for(order))
            confirmed = http.post(f"/v1/orders/{order['id']}/confirm", headers=keyed(alice),
                                  json={"payment_id": pay.id})
            assert confirmed.status_code == 200, confirmed.text
            metrics = http.get("/metrics").text

        found: list[tuple[str, dict[str, Any]]] = []

        def published() -> bool:
            found.extend(take(broker, probe.queue))
            return any(key == "orders.OrderConfirmed" for key, _ in found)

        wait_until(published, timeout=15, interval=0.05,
                   what="orders.OrderConfirmed on the probe queue")
        key, doc = next((k, d) for k, d in found if k == "orders.OrderConfirmed")
        data = doc["data"]
        assert data["order_id"] == order["id"]
        assert data["customer_id"] == "alice"
        assert data["payment_id"] == pay.id
        assert data["total"] == {"amount_minor": order["total"], "currency": "EUR"}
        assert data["item_count"] == 2
        assert doc["source"] == "orders" and doc["type"] == "OrderConfirmed"
        assert EMAIL not in json.dumps(doc)  # events carry ids, never personal data
        assert 'charter_messaging_leader{service="orders"} 1.0' in metrics
    finally:
        messaging.stop()
        worker.close()


def test_readiness_fails_while_the_broker_is_down(
        db: Database, tokens: TokenFactory, tmp_path: Path) -> None:
    down = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}//", connect_timeout=2)
    app, messaging = orders_app_with(db, tokens, down, tmp_path, InMemoryPayments())
    assert app_context(app).messaging is messaging
    with app.test_client() as client:
        answer = client.get("/health/ready")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["broker"] == "failed"
    assert checks["database"] == "ok"  # the broker alone makes it unready
    down.close()


@pytest.mark.parametrize("switch", ["on", "off"])
def test_create_asgi_starts_messaging_unless_switched_off(
        switch: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        migrated_db: Callable[[str, str], Database]) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    migrated_db("orders", url)
    monkeypatch.setenv("ORDERS_DATABASE_URL", url)
    monkeypatch.setenv("ORDERS_RECOVERY_INTERVAL", "0")
    monkeypatch.setenv("CHARTER_MTLS", "0")
    monkeypatch.setenv("CHARTER_MESSAGING", switch)
    monkeypatch.setenv("AMQP_URL", f"embedded+sqlite:///{tmp_path / 'broker.db'}")
    pollers: list[RevocationPoller] = []  # stopped after (auth's feed is not running)
    real_start = RevocationPoller.start

    def start(self: RevocationPoller) -> None:
        pollers.append(self)
        real_start(self)

    monkeypatch.setattr(RevocationPoller, "start", start)
    app = orders_app.create_asgi()
    messaging = app_context(app).messaging
    try:
        if switch == "off":
            assert messaging is None
            assert "broker" not in app_context(app).checks
            return
        assert messaging is not None
        wait_until(lambda: messaging.leading, timeout=10, what="the one worker to lead")
        assert messaging.broker.url.startswith("embedded+sqlite://")
    finally:
        if messaging is not None:
            messaging.stop()
        for poller in pollers:
            poller.stop()
