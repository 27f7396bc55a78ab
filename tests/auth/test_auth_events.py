"""auth publishes ``auth.UserRegistered`` through its outbox (``auth.events``).

Registering writes exactly one outbox row in the transaction that creates the user; a
refused registration (duplicate e-mail, weak password) and a rolled-back transaction write
none; the envelope carries the user id (the token ``sub``) and the role, never the e-mail.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from auth_helpers import csrf_from
from flask.testing import FlaskClient
from kombu import Queue
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from auth import accounts
from auth.app import auth_messaging
from auth.events import user_registered
from auth.store import User, outbox
from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.envelope import Envelope
from charter.messaging.leader import LeaderLock
from charter.observability.logs import correlation_id
from tests.support.brokers import BACKENDS, temporary_broker, unique
from tests.support.polling import wait_until


def registered(db: Database) -> list[Envelope]:
    """Every ``auth.UserRegistered`` in the outbox, oldest first."""
    t = outbox.table
    with db.session() as session:
        rows = session.execute(select(t.c.routing_key, t.c.body, t.c.event_id)
                               .order_by(t.c.position)).all()
    found = []
    for key, body, event_id in rows:
        envelope = Envelope.from_json(body)
        assert envelope.id == event_id and envelope.routing_key == key
        if key == "auth.UserRegistered":
            found.append(envelope)
    return found


def for_user(db: Database, user_id: str) -> list[Envelope]:
    return [e for e in registered(db) if e.data.get("user_id") == user_id]


def test_user_registered_envelope_carries_ids_only() -> None:
    token = correlation_id.set("corr-123")
    try:
        envelope = user_registered("4b1c7c53-0000-4000-8000-000000000001", "customer")
    finally:
        correlation_id.reset(token)
    assert envelope.routing_key == "auth.UserRegistered"
    assert envelope.source == "auth" and envelope.type == "UserRegistered"
    assert dict(envelope.data) == {"user_id": "4b1c7c53-0000-4000-8000-000000000001",
                                   "role": "customer"}
    assert envelope.correlation_id == "corr-123"
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_register_json_writes_exactly_one_user_registered(client: FlaskClient,
                                                          db: Database) -> None:
    before = len(registered(db))
    response = client.post("/register", json={"email": "Erin@Example.com",
                                              "password": "erin-long-password"})
    assert response.status_code == 201
    user_id = response.get_json()["id"]
    events = registered(db)
    assert len(events) == before + 1
    [event] = for_user(db, user_id)
    assert dict(event.data) == {"user_id": user_id, "role": "customer"}
    assert "erin" not in event.to_json().lower()  # no e-mail, not even its local part


def test_register_form_writes_one_user_registered(client: FlaskClient, db: Database) -> None:
    page = client.get("/register")
    response = client.post("/register", data={
        "email": "frieda@example.com", "password": "frieda-password-1",
        "csrf_token": csrf_from(page.get_data(as_text=True)), "next": "/"})
    assert response.status_code == 302
    with db.session() as session:
        user = accounts.find_by_email(session, "frieda@example.com")
        assert user is not None
        user_id = user.id
    assert len(for_user(db, user_id)) == 1


@pytest.mark.parametrize("second, status", [
    ({"email": "GRACE@example.com", "password": "another-long-pw"}, 409),  # duplicate
    ({"email": "heidi@example.com", "password": "short"}, 422),             # weak password
    ({"email": "not-an-address", "password": "long-enough-pw"}, 422),       # bad e-mail
])
def test_refused_registration_writes_nothing(client: FlaskClient, db: Database,
                                             second: dict[str, str], status: int) -> None:
    first = client.post("/register", json={"email": "grace@example.com",
                                           "password": "grace-long-password"})
    assert first.status_code == 201
    before = registered(db)
    response = client.post("/register", json=second)
    assert response.status_code == status
    assert registered(db) == before


@pytest.fixture
def auth_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """A migrated (unseeded) auth database on SQLite and on PostgreSQL."""
    return migrated_db("auth", any_database_url)


def test_event_commits_and_rolls_back_with_the_user(auth_db: Database) -> None:
    try:
        with auth_db.session() as session:
            accounts.create_user(session, "ivan@example.com", "ivan-long-password", "staff")
            raise RuntimeError("the transaction fails after the user was written")
    except RuntimeError:
        pass
    with auth_db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
    assert registered(auth_db) == []

    with auth_db.session() as session:
        user = accounts.create_user(session, "ivan@example.com", "ivan-long-password", "staff")
        user_id = user.id
    [event] = registered(auth_db)
    assert dict(event.data) == {"user_id": user_id, "role": "staff"}

    with pytest.raises(accounts.EmailTaken), auth_db.session() as session:
        accounts.create_user(session, "IVAN@example.com", "other-long-password")
    assert registered(auth_db) == [event]


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_relay_publishes_user_registered(kind: str, tmp_path: Path, db: Database) -> None:
    """``auth_messaging`` (what ``create_asgi`` starts) carries the committed event to a
    queue bound as notifications binds it, on the embedded broker and on RabbitMQ."""
    with temporary_broker(kind, tmp_path) as broker:
        probe = Subscription(unique("probe"), ("auth.UserRegistered",), max_attempts=1)
        broker.declare(probe)
        lock = LeaderLock("auth-messaging", db.url, var_dir=tmp_path / "lock")
        messaging = auth_messaging(db, broker=broker, lock=lock,
                                   registry=CollectorRegistry(), lead_interval=0.1)
        with messaging:
            with db.session() as session:
                user_id = accounts.create_user(session, "judy@example.com",
                                               "judy-long-password").id
            got: list[Envelope] = []

            def arrived() -> bool:
                with broker.channel() as channel:
                    queue = Queue(probe.queue, no_declare=True)(channel)
                    while (message := queue.get(no_ack=False)) is not None:
                        got.append(Envelope.from_json(message.body))
                        message.ack()
                return any(e.data.get("user_id") == user_id for e in got)

            wait_until(arrived, timeout=15, interval=0.05, what="UserRegistered")
    assert [e.id for e in got if e.data.get("user_id") == user_id] == [
        e.id for e in for_user(db, user_id)]
