"""Fixtures of the payments tests: a migrated SQLite file, provider, app, callers.

``tokens``, ``migrated_db``, ``client`` (of ``app``), ``postgres_url``… come from the shared plugin
(``tests/support/plugin.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from payments_support import Caller

from charter.db import Database
from charter.testing import TokenFactory
from services.payments.app import create_app
from services.payments.clients import SimulatedProvider
from services.payments.services import PaymentsService


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("payments", f"sqlite:///{tmp_path / 'payments.db'}")


@pytest.fixture
def provider() -> SimulatedProvider:
    return SimulatedProvider(decline_above=1_000_000)


@pytest.fixture
def app(db: Database, tokens: TokenFactory, provider: SimulatedProvider,
        validate_responses: None) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), provider=provider)


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
