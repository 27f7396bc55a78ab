"""Fixtures of the exchange tests: a migrated SQLite file, a fake clock, a source, the app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange_fakes import InMemoryRateSource
from exchange_support import SEED_RATES, FakeClock, migrated

from charter.cache import TTLCache
from charter.db import Database
from charter.testing import TokenFactory
from services.exchange.app import create_app
from services.exchange.services import ExchangeService


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'exchange.db'}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = migrated(db_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source() -> InMemoryRateSource:
    return InMemoryRateSource("EUR", SEED_RATES)


@pytest.fixture
def make_app(db: Database, tokens: TokenFactory, clock: FakeClock,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """A new app instance (fresh cache) on the test database: a "restart" each call."""
    # Every response is also checked against the spec: a drift is a 500 and fails tests.
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    monkeypatch.delenv("EXCHANGE_UPSTREAM_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)

    def build(source: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("cache", TTLCache(clock=clock.monotonic))
        return create_app(db=db, verifier=tokens.verifier(), source=source, now=clock.now,
                          **kwargs)

    return build


@pytest.fixture
def app(make_app: Callable[..., Any], source: InMemoryRateSource) -> Any:
    return make_app(source)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def service(app: Any) -> ExchangeService:
    svc: ExchangeService = app.app.extensions["charter"].deps["exchange"]
    return svc


@pytest.fixture
def auth(tokens: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(scope='exchange:read')}"}
