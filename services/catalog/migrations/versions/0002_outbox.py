"""catalog: outbox (catalog.StockChanged and catalog.LowStock written with each stock movement)

Revision ID: 0002_catalog_outbox
Revises: 0001_catalog_initial
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from charter.migration_ops import create_outbox_v1, drop_outbox_v1

revision: str = "0002_catalog_outbox"
down_revision: str | None = "0001_catalog_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_v1(op)


def downgrade() -> None:
    drop_outbox_v1(op)
