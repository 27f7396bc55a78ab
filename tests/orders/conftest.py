"""Fixtures of the orders tests: a migrated SQLite database, in-memory fakes of the other
services and the app. Tokens, databases, the test ``client``, stub servers and the token
matrix come from the shared plugin (tests/support/plugin.py, docs/testing.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import Auth

from charter.db import Database
from charter.testing import TokenFactory
from services.orders.app import create_app, order_service
from services.orders.ports import CartLine
from services.orders.services import OrderService
from tests.support.auth_headers import headers_factory

ALL_SCOPES = "orders:read orders:write cart:read cart:write"


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("orders", f"sqlite:///{tmp_path / 'orders.db'}")


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




@pytest.fixture(autouse=True)
def _validate_responses(validate_responses: None) -> None:
    """Every orders test checks responses against the spec: a drift is a 500 and fails."""


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                      payments=payments)


@pytest.fixture
def service(app: Any) -> OrderService:
    return order_service(app)


@pytest.fixture
def auth(tokens: TokenFactory) -> Auth:
    """``auth("alice")`` → headers of a customer token with the order and cart scopes."""
    return headers_factory(tokens, ALL_SCOPES, role="customer")
