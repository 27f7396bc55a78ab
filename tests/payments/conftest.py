"""Fixtures of the payments tests: a migrated SQLite file, tokens, provider, app, callers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from payments_support import Caller, migrated

from charter.db import Database
from charter.testing import TokenFactory
from services.payments.app import create_app
from services.payments.clients import SimulatedProvider
from services.payments.services import PaymentsService


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated(f"sqlite:///{tmp_path / 'payments.db'}")
    yield database
    database.dispose()


@pytest.fixture
def provider() -> SimulatedProvider:
    return SimulatedProvider(decline_above=1_000_000)


@pytest.fixture
def app(db: Database, tokens: TokenFactory, provider: SimulatedProvider,
        monkeypatch: pytest.MonkeyPatch) -> Any:
    # Every response is also checked against the spec: a drift is a 500 and fails tests.
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    return create_app(db=db, verifier=tokens.verifier(), provider=provider)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def service(app: Any) -> PaymentsService:
    svc: PaymentsService = app.app.extensions["charter"].deps["payments"]
    return svc


@pytest.fixture
def alice(client: Any, tokens: TokenFactory) -> Caller:
    return Caller(client, tokens, "alice", "customer")


@pytest.fixture
def bob(client: Any, tokens: TokenFactory) -> Caller:
    return Caller(client, tokens, "bob", "customer")


@pytest.fixture
def staff(client: Any, tokens: TokenFactory) -> Caller:
    return Caller(client, tokens, "sam-staff", "staff")


@pytest.fixture
def orders(client: Any, tokens: TokenFactory) -> Caller:
    """The orders service: the orders client (``role: service``)."""
    return Caller(client, tokens, "orders", "service")
