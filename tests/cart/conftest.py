"""Fixtures of the cart tests: a migrated SQLite database, a fake catalog, the app.

``tokens``, ``migrated_db``, ``client`` (of ``app``), ``stub_server``, ``asgi_server``,
``postgres_url``… come from the shared plugin (``tests/support/plugin.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cart_fakes import InMemoryCatalog

from charter.db import Database
from charter.testing import TokenFactory
from services.cart.app import create_app
from tests.support.plugin import bearer

ALL_SCOPES = "cart:read cart:write"


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("cart", f"sqlite:///{tmp_path / 'cart.db'}")


@pytest.fixture
def db_url(db: Database) -> str:
    """The URL of the migrated ``db`` (for tests that open their own connections)."""
    return db.url


@pytest.fixture
def catalog() -> InMemoryCatalog:
    fake = InMemoryCatalog()
    fake.put(1, name="Espresso beans 1 kg", price=1299, available=10)
    fake.put(2, name="Grinder", price=4999, available=3)
    fake.put(3, name="Filter papers", price=350, available=0)
    fake.put(4, name="Old mug", price=800, active=False)
    fake.put(5, name="Dollar tea", price=500, currency="USD")
    return fake


@pytest.fixture(autouse=True)
def _validate_responses(validate_responses: None) -> None:
    """Every app of these tests checks its responses against the spec (a drift fails)."""


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog)


@pytest.fixture
def auth(tokens: TokenFactory) -> Callable[..., dict[str, str]]:
    """``auth("alice")`` → headers of a customer token with both cart scopes."""

    def make(sub: str = "alice", scope: str = ALL_SCOPES, **claims: Any) -> dict[str, str]:
        claims.setdefault("role", "customer")
        return bearer(tokens.token(sub=sub, scope=scope, **claims))

    return make
