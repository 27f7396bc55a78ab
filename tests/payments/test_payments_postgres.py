"""The payments service on PostgreSQL: migrations, the lifecycle over HTTP, and races.

Uses the shared ``postgres_url`` fixture (a fresh database per test); skipped on a laptop
without PostgreSQL, a failure in CI.
"""

from __future__ import annotations

from typing import Any

import pytest
from payments_support import (
    DECLINED_CARD,
    Caller,
    assert_problem,
    check_concurrent_captures,
    check_concurrent_refunds,
    check_concurrent_same_key,
    database_of,
    migrated,
    new_key,
    new_service,
)
from sqlalchemy import inspect

from charter.testing import TokenFactory
from services.payments.app import create_app
from services.payments.clients import SimulatedProvider

pytestmark = pytest.mark.postgres


def test_migrations_create_the_tables(postgres_url: str) -> None:
    db = migrated(postgres_url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        assert {"payments", "refunds", "idempotency_keys",
                "alembic_version_payments"} <= tables
    finally:
        db.dispose()


def test_lifecycle_over_http(postgres_url: str, tokens: TokenFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    db = migrated(postgres_url)
    provider = SimulatedProvider(decline_above=1_000_000)
    try:
        app = create_app(db=db, verifier=tokens.verifier(), provider=provider)
        with app.test_client() as client:
            orders = Caller(client, tokens, "orders", "service")
            alice = Caller(client, tokens, "alice", "customer")
            bob = Caller(client, tokens, "bob", "customer")
            key = new_key()
            first = orders.authorize(key=key, customer_id="alice", order_id="ord-pg")
            assert first.status_code == 201, first.text
            replay = orders.authorize(key=key, customer_id="alice", order_id="ord-pg")
            assert replay.json() == first.json() and provider.charges == 1
            pid = first.json()["id"]
            assert orders.capture(pid, {"amount": 4000}).json()["status"] == "captured"
            assert_problem(alice.refund(pid, {"amount": 1500}), 403)  # made on her behalf
            refund = orders.refund(pid, {"amount": 1500})
            assert refund.status_code == 201, refund.text
            assert refund.json()["payment"]["status"] == "partially_refunded"
            assert_problem(bob.get(pid), 404)
            doc: dict[str, Any] = alice.get(pid).json()
            assert (doc["captured_amount"], doc["refunded_amount"]) == (4000, 1500)
            assert_problem(orders.authorize(customer_id="alice", order_id="ord-pg",
                                           card_number=DECLINED_CARD),
                           402)
            assert orders.list(order_id="ord-pg").json()["total"] == 2
    finally:
        db.dispose()


def test_concurrent_same_key_is_one_authorisation(postgres_url: str) -> None:
    service, provider = new_service(postgres_url)
    try:
        check_concurrent_same_key(service, provider, threads=16)
    finally:
        database_of(service).dispose()


def test_concurrent_captures(postgres_url: str) -> None:
    service, provider = new_service(postgres_url)
    try:
        check_concurrent_captures(service, provider)
    finally:
        database_of(service).dispose()


def test_concurrent_refunds(postgres_url: str) -> None:
    service, _provider = new_service(postgres_url)
    try:
        check_concurrent_refunds(service)
    finally:
        database_of(service).dispose()
