"""Fixtures of the loyalty tests: a migrated SQLite database, the app, a client and
callers' headers; ``tokens``, ``migrated_db`` and the rest come from the shared plugin
(tests/support/plugin.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from charter.db import Database
from charter.testing import TokenFactory
from services.loyalty.app import create_app
from tests.support.plugin import bearer

ALL_SCOPES = "loyalty:read loyalty:write"

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")


@pytest.fixture(autouse=True)
def _validate_responses(validate_responses: None) -> None:
    """Every response is also checked against the spec (the plugin's fixture)."""


@pytest.fixture
def app(db: Database, tokens: TokenFactory) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), points_per_unit=1)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def auth(tokens: TokenFactory) -> Auth:
    """``auth("alice")`` → headers of a customer token with both loyalty scopes."""

    def make(sub: str = "alice", scope: str = ALL_SCOPES, **claims: Any) -> dict[str, str]:
        claims.setdefault("role", "customer")
        return bearer(tokens.token(sub=sub, scope=scope, **claims))

    return make


@pytest.fixture
def service_auth(tokens: TokenFactory) -> dict[str, str]:
    """Headers of the platform's internal client token (``role: service``)."""
    return bearer(tokens.token(sub="orders", scope=ALL_SCOPES, role="service",
                               client_id="orders"))


@pytest.fixture
def award(client: Any, service_auth: dict[str, str]) -> Callable[..., Any]:
    """``award("alice", "ord-1", points=100)`` through the API as the internal client."""

    def make(customer_id: str, order_id: str, **fields: Any) -> Any:
        body = {"customer_id": customer_id, "order_id": order_id, **fields}
        return client.post("/v1/awards", json=body, headers=service_auth)

    return make
