"""The cart store and use cases on SQLite and PostgreSQL (the shared ``any_database_url``
fixture): migrations, round trips and concurrent changes to one cart without lost updates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cart_fakes import InMemoryCatalog

from charter.db import Database, SqlUnitOfWork
from services.cart.domain import Cart, CartItem
from services.cart.services import CartService
from services.cart.store import SqlCartRepository, metadata
from tests.support.plugin import run_threads
from tests.support.schema import assert_migrations_match_models


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """A migrated cart database on each backend (disposed by ``migrated_db``)."""
    return migrated_db("cart", any_database_url)


def item(product_id: int, quantity: int = 1) -> CartItem:
    return CartItem(product_id, f"SKU-{product_id}", f"P{product_id}", 100, "EUR", quantity)


def test_migration_matches_the_tables(any_database_url: str) -> None:
    tables = assert_migrations_match_models("cart", any_database_url, metadata)
    assert {"carts", "cart_items", "alembic_version_cart"} <= tables


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
    results = run_threads(12, lambda _i: service.add_item("alice", 1, 1))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert service.view("alice").find(1).quantity == 12  # type: ignore[union-attr]


def test_first_add_for_a_new_user_races_safely(any_db: Database) -> None:
    catalog = InMemoryCatalog()
    for pid in range(1, 9):
        catalog.put(pid)
    service = CartService(SqlUnitOfWork(any_db, SqlCartRepository), catalog)
    results = run_threads(8, lambda i: service.add_item("newcomer", i + 1, 1))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(i.product_id for i in service.view("newcomer").items) == list(range(1, 9))
