"""Migrations, concurrent sends of one key, and the API on PostgreSQL.

Each check is a function of a database URL so it runs on SQLite and on PostgreSQL (the
shared ``postgres_url`` fixture gives a fresh database per test).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from notifications_support import EMAIL, SMS, InMemoryProvider, assert_problem, bearer, migrated
from sqlalchemy import inspect

from charter import migrations
from charter.problems import Conflict
from charter.security.principal import Principal
from charter.testing import TokenFactory
from services.notifications.app import MIGRATIONS_DIR, create_app, notification_service
from services.notifications.domain import NotificationFilter
from services.notifications.ports import Message, ProviderError, ProviderResult
from services.notifications.services import Sent
from services.notifications.store import metadata
from tests.support.races import run_threads

INTERNAL = Principal("orders", "service", frozenset(), client_id="orders")

TABLES = {"notifications", "idempotency_keys", "alembic_version_notifications"}


class SlowProvider(InMemoryProvider):
    """Takes a while to send, so concurrent requests overlap with the send itself."""

    def send(self, message: Message) -> ProviderResult:
        time.sleep(0.2)
        return super().send(message)


def check_migrations_match_models(url: str) -> None:
    migrations.upgrade("notifications", MIGRATIONS_DIR, url)
    db = migrated(url)
    try:
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": "alembic_version_notifications"})
            diff = [d for d in compare_metadata(ctx, metadata)
                    if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))]
        assert diff == []
        cfg = migrations.alembic_config("notifications", MIGRATIONS_DIR, url)
        command.downgrade(cfg, "base")
        left = set(inspect(db.engine).get_table_names()) - {"alembic_version_notifications"}
        assert left == set()
        migrations.upgrade("notifications", MIGRATIONS_DIR, url)
    finally:
        db.dispose()


def check_one_key_sends_once_under_concurrency(url: str, threads: int = 10) -> None:
    provider = SlowProvider()
    db = migrated(url)
    service = notification_service(db, provider)
    try:
        results = run_threads(threads, lambda i: service.send(INTERNAL, "race-key-0001",
                                                              dict(EMAIL)))
        fresh = [r for r in results if isinstance(r, Sent) and not r.replayed]
        others = [r for r in results if not (isinstance(r, Sent) and not r.replayed)]
        assert len(fresh) == 1, results
        for r in others:  # replayed after the first finished, or 409 while it was in flight
            assert (isinstance(r, Sent) and r.notification == fresh[0].notification) or (
                isinstance(r, Conflict) and r.status == 409), r
        assert len(provider.sent) == 1
        again = service.send(INTERNAL, "race-key-0001", dict(EMAIL))
        assert again.replayed and again.notification == fresh[0].notification
        listed = service.list(INTERNAL, NotificationFilter())
        assert listed.total == 1 and listed.items[0].status == "sent"
        assert listed.items[0].requested_by == "orders"
    finally:
        db.dispose()


def check_distinct_keys_all_send(url: str, threads: int = 10) -> None:
    provider = InMemoryProvider()
    db = migrated(url)
    service = notification_service(db, provider)
    try:
        results = run_threads(threads, lambda i: service.send(
            INTERNAL, f"distinct-key-{i:04d}", {**SMS, "order_id": f"ord-{i}"}))
        assert all(isinstance(r, Sent) and not r.replayed for r in results), results
        assert len(provider.sent) == threads
        sms = service.list(INTERNAL, NotificationFilter(channel="sms"), page_size=100)
        assert sms.total == threads
    finally:
        db.dispose()


def check_failure_then_retry(url: str) -> None:
    provider = InMemoryProvider()
    db = migrated(url)
    service = notification_service(db, provider)
    try:
        provider.fail = ProviderError("memory", "down", permanent=False)
        with pytest.raises(Exception) as info:
            service.send(INTERNAL, "retry-key-0001", dict(EMAIL))
        assert getattr(info.value, "status", None) == 503
        provider.fail = None
        ok = service.send(INTERNAL, "retry-key-0001", dict(EMAIL))
        assert ok.notification.status == "sent" and not ok.replayed
        statuses = [n.status for n in service.list(INTERNAL, NotificationFilter()).items]
        assert statuses == ["sent", "failed"]
    finally:
        db.dispose()


CHECKS = [check_migrations_match_models, check_one_key_sends_once_under_concurrency,
          check_distinct_keys_all_send, check_failure_then_retry]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_sqlite(tmp_path: Path, check: Callable[[str], None]) -> None:
    check(f"sqlite:///{tmp_path / 'notifications.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_postgres(postgres_url: str, check: Callable[[str], None]) -> None:
    check(postgres_url)


@pytest.mark.postgres
def test_api_on_postgres(postgres_url: str, tokens: TokenFactory) -> None:
    db = migrated(postgres_url)
    provider = InMemoryProvider()
    try:
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
    finally:
        db.dispose()


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
