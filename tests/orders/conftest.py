"""Fixtures of the orders tests: a migrated SQLite database, in-memory fakes of the other
services, tokens and the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryLoyalty,
    InMemoryNotifications,
    InMemoryPayments,
)
from orders_support import Auth, bearer

from charter import migrations
from charter.db import Database
from charter.testing import TokenFactory
from services.orders.app import MIGRATIONS_DIR, create_app, order_service
from services.orders.ports import CartLine
from services.orders.services import OrderService

ALL_SCOPES = "orders:read orders:write cart:read cart:write"


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    migrations.upgrade("orders", MIGRATIONS_DIR, url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def catalog() -> InMemoryCatalog:
    fake = InMemoryCatalog()
    fake.put(1, name="Espresso Blend 1 kg", sku="COF-0001", price=2490, on_hand=10)
    fake.put(2, name="Burr Grinder", sku="BRW-0005", price=12900, on_hand=2)
    fake.put(3, name="Paper Filters (100)", sku="BRW-0002", price=590, on_hand=0)
    fake.put(4, name="Old mug", price=800, active=False)
    fake.put(5, name="Dollar tea", price=500, currency="USD")
    return fake


@pytest.fixture
def cart(catalog: InMemoryCatalog) -> InMemoryCart:
    fake = InMemoryCart()
    fake.put("alice", [
        CartLine(1, "COF-0001", "Espresso Blend 1 kg", 2490, "EUR", 2),
        CartLine(2, "BRW-0005", "Burr Grinder", 12900, "EUR", 1),
    ])
    return fake


@pytest.fixture
def payments() -> InMemoryPayments:
    return InMemoryPayments()


@pytest.fixture
def loyalty() -> InMemoryLoyalty:
    return InMemoryLoyalty()


@pytest.fixture
def notifications() -> InMemoryNotifications:
    return InMemoryNotifications()


@pytest.fixture(autouse=True)
def _validate_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response is also checked against the spec: a drift is a 500 and fails tests."""
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, loyalty: InMemoryLoyalty,
        notifications: InMemoryNotifications) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                      payments=payments, loyalty=loyalty, notifications=notifications)


@pytest.fixture
def service(app: Any) -> OrderService:
    return order_service(app)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def auth(tokens: TokenFactory) -> Auth:
    """``auth("alice")`` → headers of a customer token with the order and cart scopes."""

    def make(sub: str = "alice", scope: str = ALL_SCOPES, **claims: Any) -> dict[str, str]:
        claims.setdefault("role", "customer")
        return bearer(tokens.token(sub=sub, scope=scope, **claims))

    return make
