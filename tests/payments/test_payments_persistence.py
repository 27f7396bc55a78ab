"""The payments service on its databases: migrations, races (SQLite and PostgreSQL), and
the lifecycle over HTTP on PostgreSQL.

``any_database_url`` (shared plugin) runs a test on a SQLite file and on a fresh
PostgreSQL database; skipped on a laptop without PostgreSQL, a failure in CI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from payments_support import DECLINED_CARD, Caller, count_payments, new_key, payment_body
from sqlalchemy import func, select

from charter.db import Database
from charter.problems import Problem
from charter.security.principal import Principal
from charter.testing import TokenFactory
from services.payments.app import create_app, payments_service
from services.payments.clients import SimulatedProvider
from services.payments.services import AuthorizeRequest, PaymentsService
from services.payments.store import idempotency_keys, metadata
from tests.support.plugin import assert_problem, run_threads
from tests.support.schema import assert_migrations_match_models

ALICE = Principal(sub="alice", role="customer", scopes=frozenset())


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """A migrated payments database on each backend (disposed by ``migrated_db``)."""
    return migrated_db("payments", any_database_url)


@pytest.fixture
def racing(any_db: Database, provider: SimulatedProvider) -> PaymentsService:
    """The service on ``any_db``: its use cases are raced directly, without HTTP."""
    return payments_service(any_db, provider)


def test_migrations_match_models(any_database_url: str) -> None:
    tables = assert_migrations_match_models("payments", any_database_url, metadata)
    assert {"payments", "refunds", "idempotency_keys", "alembic_version_payments"} <= tables


def test_concurrent_same_key_is_one_authorisation(
        racing: PaymentsService, any_db: Database, provider: SimulatedProvider) -> None:
    """16 identical requests with one key: one authorisation, one answer."""
    body = payment_body()
    results = run_threads(16, lambda _i: racing.authorize(ALICE, "race-key-01",
                                                         AuthorizeRequest(**body)))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert len({r.body.id for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert len(provider.calls_of("authorize")) == 1 and provider.charges == 1
    assert count_payments(racing) == 1
    with any_db.session() as session:
        assert session.scalar(select(func.count()).select_from(idempotency_keys)) == 1


def test_concurrent_captures(racing: PaymentsService, provider: SimulatedProvider) -> None:
    """Concurrent captures of one payment with different keys: one wins, the rest 409."""
    pid = racing.authorize(ALICE, "auth-key-01", AuthorizeRequest(**payment_body())).body.id
    results = run_threads(10, lambda i: racing.capture(ALICE, pid, f"cap-key-{i:03d}"))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(e, Problem) and e.status == 409 for e in lost), lost
    assert len(provider.calls_of("capture")) == 1


def test_concurrent_refunds(racing: PaymentsService) -> None:
    """Concurrent partial refunds never exceed the captured amount."""
    pid = racing.authorize(ALICE, "auth-key-02",
                           AuthorizeRequest(**payment_body(amount=1000))).body.id
    racing.capture(ALICE, pid, "cap-key-main", 500)
    results = run_threads(10, lambda i: racing.refund(ALICE, pid, f"ref-key-{i:03d}", 100))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 5, results
    assert all(isinstance(e, Problem) and e.status in (409, 422) for e in lost), lost
    assert racing.get(ALICE, pid).refunded_amount == 500


@pytest.mark.postgres
def test_lifecycle_over_http_on_postgres(
        postgres_url: str, tokens: TokenFactory, provider: SimulatedProvider,
        migrated_db: Callable[[str, str], Database], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    db = migrated_db("payments", postgres_url)
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
                                        card_number=DECLINED_CARD), 402)
        assert orders.list(order_id="ord-pg").json()["total"] == 2
