"""orders: orders.loyalty_reversal_status (taking back the points of a refunded order)

Revision ID: orders_0003
Revises: orders_0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0003"
down_revision: str | None = "orders_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("loyalty_reversal_status", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("loyalty_reversal_status")
