"""The exchange service on PostgreSQL: migrations, seed, last known rates across a restart.

Uses the shared ``postgres_url`` fixture (a fresh database per test); skipped on a laptop
without PostgreSQL, a failure in CI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from exchange_fakes import InMemoryRateSource
from sqlalchemy import inspect

from charter.cache import TTLCache
from charter.db import Database
from charter.testing import TokenFactory
from services.exchange.app import create_app
from services.exchange.clients import TableRateSource
from services.exchange.seed import seed
from tests.support.clocks import SettableClock
from tests.support.plugin import bearer

pytestmark = pytest.mark.postgres


def test_seed_rates_and_stale_after_restart(postgres_url: str, tokens: TokenFactory,
                                            clock: SettableClock,
                                            migrated_db: Callable[[str, str], Database],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    db = migrated_db("exchange", postgres_url)
    auth = bearer(tokens.token(scope="exchange:read"))
    assert {"base_rates", "last_known_rates", "alembic_version_exchange"} <= set(
        inspect(db.engine).get_table_names())
    assert seed(db) == 13 and seed(db) == 0

    def app(source: Any) -> Any:
        return create_app(db=db, verifier=tokens.verifier(), source=source,
                          cache=TTLCache(clock=clock.monotonic), now=clock.now)

    with app(TableRateSource(db)).test_client() as client:
        fresh = client.get("/v1/convert?from=EUR&to=JPY&amount=1000", headers=auth)
        assert fresh.status_code == 200, fresh.text
        assert (fresh.json()["converted_amount"], fresh.json()["stale"]) == (1625, False)
        clock.advance(61)  # a second fetch updates the stored row
        assert client.get("/v1/rates?from=USD", headers=auth).status_code == 200
    clock.advance(30)
    down = InMemoryRateSource("EUR", {"USD": 1})
    down.down = True
    with app(down).test_client() as client:
        response = client.get("/v1/convert?from=EUR&to=JPY&amount=1000", headers=auth)
    doc = response.json()
    assert (doc["stale"], doc["age"], doc["converted_amount"]) == (True, 30, 1625)
    assert response.headers["warning"] == '110 - "Response is Stale"'
