"""Migrations match the models (SQLite and PostgreSQL) and the demo seed is idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from charter import migrations
from charter.db import Database
from services.catalog.app import MIGRATIONS_DIR
from services.catalog.seed import seed
from services.catalog.store import CategoryRow, ProductRow, StockRow, metadata

TABLES = {"categories", "products", "stock", "reservations", "reservation_items",
          "idempotency_keys", "alembic_version_catalog"}


def check_migrations_match_models(url: str) -> None:
    migrations.upgrade("catalog", MIGRATIONS_DIR, url)
    db = Database(url)
    try:
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": "alembic_version_catalog"})
            diff = [d for d in compare_metadata(ctx, metadata)
                    if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))]
        assert diff == []
        command.downgrade(migrations.alembic_config("catalog", MIGRATIONS_DIR, url), "base")
        left = set(inspect(db.engine).get_table_names()) - {"alembic_version_catalog"}
        assert left == set()
        migrations.upgrade("catalog", MIGRATIONS_DIR, url)  # and back up again
    finally:
        db.dispose()


def check_seed(url: str) -> None:
    migrations.upgrade("catalog", MIGRATIONS_DIR, url)
    db = Database(url)
    try:
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
    finally:
        db.dispose()


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    check_migrations_match_models(f"sqlite:///{tmp_path / 'catalog.db'}")


def test_sqlite_seed(tmp_path: Path) -> None:
    check_seed(f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.mark.postgres
def test_postgres_migrations_match_models(postgres_url: str) -> None:
    check_migrations_match_models(postgres_url)


@pytest.mark.postgres
def test_postgres_seed(postgres_url: str) -> None:
    check_seed(postgres_url)
