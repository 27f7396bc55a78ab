"""Fixtures of the cart tests: a migrated SQLite database, a fake catalog, tokens, the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cart_fakes import InMemoryCatalog
from cart_stubs import bearer

from charter import migrations
from charter.db import Database
from charter.testing import TokenFactory
from services.cart.app import MIGRATIONS_DIR, create_app

ALL_SCOPES = "cart:read cart:write"


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cart.db'}"
    migrations.upgrade("cart", MIGRATIONS_DIR, url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


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
def _validate_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response is also checked against the spec: a drift is a 500 and fails tests."""
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def auth(tokens: TokenFactory):  # type: ignore[no-untyped-def]
    """``auth("alice")`` → headers of a customer token with both cart scopes."""

    def make(sub: str = "alice", scope: str = ALL_SCOPES, **claims: Any) -> dict[str, str]:
        claims.setdefault("role", "customer")
        return bearer(tokens.token(sub=sub, scope=scope, **claims))

    return make
