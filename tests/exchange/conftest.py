"""Fixtures of the exchange tests: a migrated SQLite file, a settable clock, a source, the app.

Tokens, databases, the test ``client``, stub servers and the token matrix come from the
shared plugin (tests/support/plugin.py, docs/testing.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exchange_fakes import InMemoryRateSource
from exchange_support import SEED_RATES

from charter.cache import TTLCache
from charter.db import Database
from charter.testing import TokenFactory
from services.exchange.app import create_app
from services.exchange.services import ExchangeService
from tests.support.apps import dependency
from tests.support.clocks import SettableClock
from tests.support.plugin import bearer


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'exchange.db'}"


@pytest.fixture
def db(db_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("exchange", db_url)


@pytest.fixture
def clock() -> SettableClock:
    """The service's wall clock (``now=clock.now``) and the cache's (``clock.monotonic``)."""
    return SettableClock()


@pytest.fixture
def source() -> InMemoryRateSource:
    return InMemoryRateSource("EUR", SEED_RATES)


@pytest.fixture
def make_app(db: Database, tokens: TokenFactory, clock: SettableClock,
             monkeypatch: pytest.MonkeyPatch, validate_responses: None) -> Callable[..., Any]:
    """A new app instance (fresh cache) on the test database: a "restart" each call.

    Every response is also checked against the spec: a drift is a 500 and fails tests.
    """
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
def service(app: Any) -> ExchangeService:
    svc: ExchangeService = dependency(app, "exchange")
    return svc


@pytest.fixture
def auth(tokens: TokenFactory) -> dict[str, str]:
    return bearer(tokens.token(scope="exchange:read"))
