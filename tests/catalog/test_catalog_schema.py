"""Migrations match the models and the demo seed is idempotent (SQLite and PostgreSQL:
the shared ``any_database_url`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from charter.db import Database
from services.catalog.seed import seed
from services.catalog.store import CategoryRow, ProductRow, StockRow, metadata
from tests.support.schema import assert_migrations_match_models

TABLES = {"categories", "products", "stock", "reservations", "reservation_items",
          "idempotency_keys", "alembic_version_catalog"}


def test_migrations_match_models(any_database_url: str) -> None:
    assert assert_migrations_match_models("catalog", any_database_url, metadata) >= TABLES


def test_seed(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("catalog", any_database_url)
    created = seed(db)
    assert created >= 50
    assert seed(db) == 0  # idempotent
    with db.session() as s:
        def scalar(query: Any) -> int:
            return int(s.scalar(query) or 0)

        products = scalar(select(func.count()).select_from(ProductRow)
                          .where(ProductRow.active.is_(True)))
        assert products == created
        assert scalar(select(func.count()).select_from(CategoryRow)) >= 5
        assert scalar(select(func.count(func.distinct(ProductRow.category_id)))) >= 5
        assert set(s.scalars(select(ProductRow.currency).distinct())) == {"EUR"}
        assert scalar(select(func.min(ProductRow.price))) > 0
        assert scalar(select(func.min(StockRow.on_hand))) > 0
        assert scalar(select(func.count()).select_from(StockRow)) == products

