"""The demo seed and the table rate source built on it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from charter.db import Database
from services.exchange.clients import RateSourceError, TableRateSource
from services.exchange.seed import RATES, seed
from services.exchange.store import SqlRatesRepository


def test_seed_is_idempotent_and_never_overwrites(db: Database) -> None:
    assert seed(db) == len(RATES) == 13
    assert {"EUR", "USD", "GBP", "JPY", "BRL", "CHF"} <= set(RATES)
    with db.session() as session:
        SqlRatesRepository(session).put_base_rate("USD", "EUR", Decimal("1.2000"))
    assert seed(db) == 0
    table = TableRateSource(db).fetch()
    assert table.base == "EUR" and table.rates["USD"] == Decimal("1.2000")
    assert table.rates["JPY"] == Decimal("162.50") and table.rates["EUR"] == 1


def test_empty_table_is_a_source_failure(db: Database) -> None:
    with pytest.raises(RateSourceError, match="empty"):
        TableRateSource(db).fetch()


def test_mixed_bases_are_a_source_failure(db: Database) -> None:
    seed(db)
    with db.session() as session:
        SqlRatesRepository(session).put_base_rate("CHF", "USD", Decimal("0.87"))
    with pytest.raises(RateSourceError, match="mixes bases"):
        TableRateSource(db).fetch()


def test_unreadable_table_is_a_source_failure(tmp_path: object) -> None:
    db = Database("sqlite:///" + str(tmp_path) + "/no-schema.db")  # never migrated
    try:
        with pytest.raises(RateSourceError, match="unreadable"):
            TableRateSource(db).fetch()
    finally:
        db.dispose()
