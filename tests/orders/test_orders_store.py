"""The orders store on SQLite and PostgreSQL: migrations match the tables, round trips,
recovery queries, and the main flows (with concurrency) on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import cancel, confirm, new_key, payment_for, place, place_pending
from sqlalchemy import inspect

from charter.db import Database, SqlUnitOfWork
from charter.idempotency import Outcome, fingerprint
from charter.security.principal import Principal
from charter.testing import TokenFactory
from charter.unit_of_work import WriteConflict
from services.orders.app import create_app, order_service
from services.orders.domain import FollowUp, Order, OrderLine, OrderStatus, RejectionCode
from services.orders.ports import OrderFilter
from services.orders.services import Answer, Caller, PlaceRequest
from services.orders.store import SqlOrderRepository, metadata
from tests.support.plugin import bearer, run_threads
from tests.support.schema import assert_migrations_match_models

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TABLES = {"orders", "order_lines", "idempotency_keys", "alembic_version_orders"}


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """The migrated orders database on SQLite, then on a fresh PostgreSQL one."""
    return migrated_db("orders", any_database_url)


def test_migrations_match_the_tables_and_go_down_and_up(
        any_database_url: str, migrated_db: Callable[[str, str], Database]) -> None:
    assert assert_migrations_match_models("orders", any_database_url, metadata) >= TABLES
    db = migrated_db("orders", any_database_url)  # back at head after going down and up
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def make_order(order_id: str, customer: str = "alice", at: datetime = T0) -> Order:
    lines = [OrderLine(2, "S2", "Two", 150, "EUR", 3), OrderLine(1, "S1", "One", 999, "EUR", 1)]
    return Order.place(order_id, customer, lines, "EUR", at, customer_email="a@example.com")


def test_round_trip(any_db: Database) -> None:
    order = make_order("00000000-0000-4000-8000-000000000001")
    with any_db.session() as session:
        SqlOrderRepository(session).add(order)
    with any_db.session() as session:
        loaded = SqlOrderRepository(session).get(order.id)
    assert loaded == order
    assert loaded is not None and loaded.created_at.tzinfo is not None
    assert [line.product_id for line in loaded.lines] == [2, 1]  # the order they were given

    loaded.reject(RejectionCode.INSUFFICIENT_STOCK, "short", T0 + timedelta(seconds=1),
                  [{"product_id": 2, "requested": 3, "available": 1}])
    with any_db.session() as session:
        SqlOrderRepository(session).save(loaded)
    with any_db.session() as session:
        again = SqlOrderRepository(session).get(order.id, lock=True)
    assert again == loaded
    with any_db.session() as session:
        assert SqlOrderRepository(session).get("00000000-0000-4000-8000-00000000ffff") is None


def test_idempotency_keys_in_the_unit_of_work(any_db: Database) -> None:
    """Answers round-trip; a key claimed twice is the port's WriteConflict (not a
    SQLAlchemy error), and that unit of work is rolled back."""
    fp = fingerprint({"order_id": "o-1"})
    uow = SqlUnitOfWork(any_db, SqlOrderRepository)
    with uow.write() as repo:
        assert repo.idempotency.lookup("orders.test:alice", "key-1", fp) is None
        repo.idempotency.claim("orders.test:alice", "key-1", fp)
        repo.idempotency.complete("orders.test:alice", "key-1", 201, {"order_id": "o-1"})
    with pytest.raises(WriteConflict), uow.write() as repo:
        repo.add(make_order("00000000-0000-4000-8000-000000000009"))
        repo.idempotency.claim("orders.test:alice", "key-1", fp)
    with uow.read() as repo:
        assert repo.idempotency.lookup("orders.test:alice", "key-1", fp) == Outcome(
            201, {"order_id": "o-1"}, replayed=True)
        assert repo.get("00000000-0000-4000-8000-000000000009") is None  # rolled back


def test_pages_and_recovery_queries(any_db: Database) -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 7)]
    orders = [make_order(oid, "alice" if i % 2 else "bob", T0 + timedelta(minutes=i))
              for i, oid in enumerate(ids)]
    orders[0].mark_reserved(T0)
    orders[1].mark_reserved(T0)
    orders[1].start_confirmation("pay_x", T0)  # confirming
    orders[2].mark_reserved(T0)
    orders[2].record_payment("pay_y", "authorized", T0)
    orders[2].start_confirmation("pay_y", T0)
    orders[2].confirm(T0)  # confirmed before its capture (older versions): capture due
    orders[2].record("loyalty", FollowUp.DONE, T0)
    orders[2].record("notification", FollowUp.PENDING_RETRY, T0)  # the participants' own
    orders[3].cancel(T0)  # release pending
    orders[4].mark_reserved(T0)
    orders[4].cancel(T0)
    orders[4].record("release", FollowUp.DONE, T0)  # finished
    # orders[5] stays pending
    with any_db.session() as session:
        repo = SqlOrderRepository(session)
        for order in orders:
            repo.add(order)
    with any_db.session() as session:
        repo = SqlOrderRepository(session)
        page, total = repo.page(OrderFilter(customer_id="bob"), 0, 2)
        assert total == 3 and [o.id for o in page] == [ids[4], ids[2]]
        page, total = repo.page(OrderFilter(status="cancelled"), 0, 10)
        assert total == 2
        page, total = repo.page(OrderFilter(), 5, 10)
        assert total == 6 and [o.id for o in page] == [ids[0]]
        due = repo.needing_recovery(T0 + timedelta(hours=1), 100)
        assert set(due) == {ids[1], ids[2], ids[3], ids[5]}
        assert repo.needing_recovery(T0 - timedelta(seconds=1), 100) == []
        assert len(repo.needing_recovery(T0 + timedelta(hours=1), 2)) == 2


@pytest.mark.postgres
def test_main_flows_on_postgres(postgres_url: str, tokens: TokenFactory,
                                migrated_db: Callable[[str, str], Database]) -> None:
    """Place, replay, reject, recover, cancel and confirm on PostgreSQL, and concurrent
    placements with one key (the unique index decides) making one order."""
    db = migrated_db("orders", postgres_url)
    catalog = InMemoryCatalog()
    catalog.put(1, price=2490, on_hand=10)
    catalog.put(2, price=590, on_hand=0)
    payments = InMemoryPayments()
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=InMemoryCart(),
                     payments=payments)
    alice = bearer(tokens.token(sub="alice", scope="orders:read orders:write",
                                role="customer"))
    items = {"items": [{"product_id": 1, "quantity": 2}]}
    with app.test_client() as client:
        key = new_key()
        first = place(client, alice, items, key)
        assert first.status_code == 201, first.text
        assert place(client, alice, items, key).json()["id"] == first.json()["id"]
        assert place(client, alice, {"items": [{"product_id": 2, "quantity": 1}]}
                     ).status_code == 409
        pending = place_pending(client, alice, items, catalog)
        assert order_service(app).resume_pending() == {"reservation:reserved": 1}

        cancelled = cancel(client, alice, pending["id"])
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["release_status"] == "done"

        order = first.json()
        pay = payments.put(payment_for(order))
        confirmed = confirm(client, alice, order["id"], pay.id)
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["status"] == "confirmed"
        assert payments.payments[pay.id].status == "captured"
        assert catalog.on_hand[1] == 8 and catalog.reserved[1] == 0

        listed = client.get("/v1/orders?page_size=10", headers=alice).json()
        assert listed["total"] == 3
        assert sorted(o["status"] for o in listed["items"]) == [
            "cancelled", "confirmed", "rejected"]

    service = order_service(app)
    caller = Caller(Principal("bob", "customer", frozenset({"orders:write"})))
    request = PlaceRequest.from_body({"items": [{"product_id": 1, "quantity": 1}]})
    key = new_key()
    answers = run_threads(6, lambda _i: service.place(caller, key, request))
    assert len(answers) == 6 and all(isinstance(a, Answer) for a in answers), answers
    assert len({a.order.id for a in answers}) == 1
    assert answers[0].order.status in (OrderStatus.RESERVED, OrderStatus.PENDING)
    service.resume_pending()
    with db.session() as session:
        _, total = SqlOrderRepository(session).page(OrderFilter(customer_id="bob"), 0, 10)
    assert total == 1
    assert catalog.reserved[1] == 1
    assert all(count == 1 for count in catalog.effects.values()), catalog.effects
