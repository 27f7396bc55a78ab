"""The cart store and use cases on SQLite and (when reachable) PostgreSQL: migrations,
round trips and concurrent changes to one cart without lost updates."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cart_fakes import InMemoryCatalog
from sqlalchemy import inspect

from charter import migrations
from charter.db import Database, SqlUnitOfWork
from services.cart.app import MIGRATIONS_DIR
from services.cart.domain import Cart, CartItem
from services.cart.services import CartService
from services.cart.store import SqlCartRepository, metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, db_url: str) -> Any:
    if request.param == "sqlite":
        database = Database(db_url)
    else:
        url = request.getfixturevalue("postgres_url")
        migrations.upgrade("cart", MIGRATIONS_DIR, url)
        database = Database(url)
    yield database
    database.dispose()


def item(product_id: int, quantity: int = 1) -> CartItem:
    return CartItem(product_id, f"SKU-{product_id}", f"P{product_id}", 100, "EUR", quantity)


def test_migration_matches_the_tables(any_db: Database) -> None:
    inspector = inspect(any_db.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    assert any(
        name.startswith("alembic_version_cart") for name in inspector.get_table_names()
    )


def test_round_trip(any_db: Database) -> None:
    with any_db.session() as session:
        repo = SqlCartRepository(session)
        repo.lock("alice")
        cart = Cart("alice", [item(3, 2), item(1, 1)])
        repo.save(cart)
    with any_db.session() as session:
        loaded = SqlCartRepository(session).load("alice")
    assert [(i.product_id, i.quantity) for i in loaded.items] == [(3, 2), (1, 1)]
    assert loaded.updated_at is not None and loaded.updated_at.tzinfo is not None
    with any_db.session() as session:
        assert SqlCartRepository(session).load("bob").items == []
        assert SqlCartRepository(session).clear("alice") == 2
    with any_db.session() as session:
        assert SqlCartRepository(session).count_lines("alice") == 0


def test_concurrent_adds_lose_no_update(any_db: Database) -> None:
    catalog = InMemoryCatalog()
    catalog.put(1, available=1000)
    service = CartService(SqlUnitOfWork(any_db, SqlCartRepository), catalog)
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def worker() -> None:
        barrier.wait()
        try:
            service.add_item("alice", 1, 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert service.view("alice").find(1).quantity == 12  # type: ignore[union-attr]


def test_first_add_for_a_new_user_races_safely(any_db: Database) -> None:
    catalog = InMemoryCatalog()
    for pid in range(1, 9):
        catalog.put(pid)
    service = CartService(SqlUnitOfWork(any_db, SqlCartRepository), catalog)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(pid: int) -> None:
        barrier.wait()
        try:
            service.add_item("newcomer", pid, 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(pid,)) for pid in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(i.product_id for i in service.view("newcomer").items) == list(range(1, 9))
