"""orders: order_events (the audit trail of v2) and orders.payment_status

Revision ID: orders_0002
Revises: orders_0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0002"
down_revision: str | None = "orders_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("payment_status", sa.String(16), nullable=True))
    op.create_table(
        "order_events",
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE",
                                name="fk_order_events_order_id_orders"),
        sa.PrimaryKeyConstraint("order_id", "sequence", name="pk_order_events"),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("payment_status")
