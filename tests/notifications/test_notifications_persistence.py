"""Migrations, concurrent sends of one key, and the API on PostgreSQL.

Each test runs on SQLite and on PostgreSQL (the shared ``any_database_url`` fixture gives
a fresh database of each backend).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from notifications_support import EMAIL, SMS, InMemoryProvider

from charter.db import Database
from charter.problems import Conflict
from charter.security.principal import Principal
from charter.testing import TokenFactory
from services.notifications.app import create_app, notification_service
from services.notifications.domain import NotificationFilter
from services.notifications.ports import Message, ProviderError, ProviderResult
from services.notifications.services import Sent
from services.notifications.store import metadata
from tests.support.plugin import assert_problem, bearer, run_threads, wait_until
from tests.support.schema import assert_migrations_match_models

INTERNAL = Principal("orders", "service", frozenset(), client_id="orders")

TABLES = {"notifications", "idempotency_keys", "alembic_version_notifications"}


class HeldProvider(InMemoryProvider):
    """Holds each send until ``released()`` is true, so concurrent requests are answered
    while the send is in flight (instead of hoping a fixed delay makes them overlap)."""

    def __init__(self, released: Callable[[], bool]) -> None:
        super().__init__()
        self.released = released

    def send(self, message: Message) -> ProviderResult:
        wait_until(self.released, timeout=30, what="the other requests to be answered")
        return super().send(message)


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """A migrated notifications database on each backend (disposed by ``migrated_db``)."""
    return migrated_db("notifications", any_database_url)


def test_migrations_match_models(any_database_url: str) -> None:
    assert assert_migrations_match_models("notifications", any_database_url,
                                          metadata) >= TABLES


def test_one_key_sends_once_under_concurrency(any_db: Database) -> None:
    threads = 10
    answered: list[int] = []  # requests that returned (or raised) so far
    provider = HeldProvider(lambda: len(answered) >= threads - 1)
    service = notification_service(any_db, provider)

    def work(i: int) -> Sent:
        try:
            return service.send(INTERNAL, "race-key-0001", dict(EMAIL))
        finally:
            answered.append(i)

    results = run_threads(threads, work)
    fresh = [r for r in results if isinstance(r, Sent) and not r.replayed]
    others = [r for r in results if not (isinstance(r, Sent) and not r.replayed)]
    assert len(fresh) == 1, results
    for r in others:  # all answered while the first send was in flight: 409
        assert isinstance(r, Conflict) and r.status == 409, r
    assert len(provider.sent) == 1
    again = service.send(INTERNAL, "race-key-0001", dict(EMAIL))
    assert again.replayed and again.notification == fresh[0].notification
    listed = service.list(INTERNAL, NotificationFilter())
    assert listed.total == 1 and listed.items[0].status == "sent"
    assert listed.items[0].requested_by == "orders"


def test_distinct_keys_all_send(any_db: Database) -> None:
    threads = 10
    provider = InMemoryProvider()
    service = notification_service(any_db, provider)
    results = run_threads(threads, lambda i: service.send(
        INTERNAL, f"distinct-key-{i:04d}", {**SMS, "order_id": f"ord-{i}"}))
    assert all(isinstance(r, Sent) and not r.replayed for r in results), results
    assert len(provider.sent) == threads
    sms = service.list(INTERNAL, NotificationFilter(channel="sms"), page_size=100)
    assert sms.total == threads


def test_failure_then_retry(any_db: Database) -> None:
    provider = InMemoryProvider()
    service = notification_service(any_db, provider)
    provider.fail = ProviderError("memory", "down", permanent=False)
    with pytest.raises(Exception) as info:
        service.send(INTERNAL, "retry-key-0001", dict(EMAIL))
    assert getattr(info.value, "status", None) == 503
    provider.fail = None
    ok = service.send(INTERNAL, "retry-key-0001", dict(EMAIL))
    assert ok.notification.status == "sent" and not ok.replayed
    statuses = [n.status for n in service.list(INTERNAL, NotificationFilter()).items]
    assert statuses == ["sent", "failed"]


@pytest.mark.postgres
def test_api_on_postgres(postgres_url: str, tokens: TokenFactory,
                         migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("notifications", postgres_url)
    provider = InMemoryProvider()
    app = create_app(db=db, verifier=tokens.verifier(), provider=provider)
    service = bearer(tokens.token(sub="orders", role="service",
                                  scope="notifications:write notifications:read"))
    staff = bearer(tokens.token(sub="carol", role="staff", scope="notifications:read"))
    customer = bearer(tokens.token(sub="alice", role="customer",
                                   scope="notifications:read"))
    with app.test_client() as c:
        headers = {**service, "Idempotency-Key": "pg-key-000001"}
        first = c.post("/v1/notifications", json=EMAIL, headers=headers)
        assert first.status_code == 201, first.text
        again = c.post("/v1/notifications", json=EMAIL, headers=headers)
        assert again.json() == first.json() and again.headers["idempotent-replayed"]
        assert_problem(c.post("/v1/notifications", json={**EMAIL, "body": "changed"},
                              headers=headers), 422)
        listing = c.get("/v1/notifications?recipient=ALICE@example.com&order_id=ord-1",
                        headers=staff).json()
        assert listing["total"] == 1 and listing["items"][0] == first.json()
        assert c.get(f"/v1/notifications/{first.json()['id']}",
                     headers=staff).json() == first.json()
        assert_problem(c.get("/v1/notifications", headers=customer), 403)
    assert len(provider.sent) == 1


def test_customers_are_refused_by_the_service_layer(db: Any) -> None:
    """Authorisation is decided in the service layer, whatever adapter calls it."""
    from charter.problems import Forbidden

    provider = InMemoryProvider()
    service = notification_service(db, provider)
    customer = Principal("alice", "customer", frozenset({"notifications:write"}))
    sent = service.send(INTERNAL, "svc-key-0001", dict(EMAIL)).notification
    for call in (lambda: service.send(customer, "svc-key-0002", dict(EMAIL)),
                 lambda: service.list(customer, NotificationFilter()),
                 lambda: service.get(customer, sent.id)):
        with pytest.raises(Forbidden):
            call()
    assert len(provider.sent) == 1
