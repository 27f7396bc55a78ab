"""Auth's readiness names each dependency: the database, Redis when the sign-in throttle
uses it, and the broker when its relay publishes ``UserRegistered``; one down is a 503
problem carrying the same ``checks`` and ``dependencies``."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from auth.app import attach_messaging, auth_messaging
from auth.throttle import RedisStore, Throttle, ThrottleSettings
from auth.web import EXTENSION
from charter.db import Database
from charter.messaging.broker import Broker
from charter.messaging.leader import LeaderLock
from tests.support.plugin import assert_problem
from tests.support.servers import free_port


def test_ready_names_the_database(client: FlaskClient) -> None:
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    doc = ready.get_json()
    assert doc["checks"] == {"database": "ok"}
    assert doc["dependencies"] == {"database": {"status": "up"}}


def test_an_unreachable_broker_makes_auth_unready(app: Flask, client: FlaskClient,
                                                  db: Database, tmp_path: Path) -> None:
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}//", connect_timeout=1.0)
    messaging = auth_messaging(db, broker=broker, lock=LeaderLock(
        "auth-messaging", db.url, var_dir=tmp_path / "lock"))
    attach_messaging(app, messaging, CollectorRegistry())  # what create_asgi does
    response = client.get("/health/ready")
    doc = assert_problem(response, 503)
    assert doc["checks"] == {"database": "ok", "broker": "failed"}
    assert doc["dependencies"] == {"database": {"status": "up"}, "broker": {"status": "down"}}
    broker.close()


def test_redis_backed_throttle_is_a_readiness_check(app: Flask, client: FlaskClient) -> None:
    context = app.extensions[EXTENSION]
    context.throttle = Throttle(ThrottleSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                                secret="s")
    assert isinstance(context.throttle.store, RedisStore)
    context.checks.clear()
    context.__post_init__()  # as when the context is built with this throttle
    response = client.get("/health/ready")
    doc = assert_problem(response, 503)  # sign-ins fail closed without Redis
    assert doc["dependencies"]["redis"] == {"status": "down"}
