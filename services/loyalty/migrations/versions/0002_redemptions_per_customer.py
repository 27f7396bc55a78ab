"""Scope redemptions to their customer: one redemption per (customer, order id).

Awards stay one per order platform-wide (a partial unique index over the award types);
redemptions and their reversals become unique per customer, so one customer's order ids
are invisible to another (see ``services.loyalty.domain``).

Revision ID: loyalty_0002
Revises: loyalty_0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "loyalty_0002"
down_revision: str | None = "loyalty_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AWARD_TYPES = "type IN ('award', 'award_reversal')"


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("uq_ledger_entries_order_id_type", type_="unique")
        batch.create_unique_constraint(
            "uq_ledger_entries_customer_id_order_id_type", ["customer_id", "order_id", "type"]
        )
    op.create_index(
        "ux_ledger_entries_award_order", "ledger_entries", ["order_id", "type"], unique=True,
        sqlite_where=sa.text(AWARD_TYPES), postgresql_where=sa.text(AWARD_TYPES),
    )


def downgrade() -> None:
    # Fails (as it should) if two customers hold a redemption of the same order id.
    op.drop_index("ux_ledger_entries_award_order", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("uq_ledger_entries_customer_id_order_id_type", type_="unique")
        batch.create_unique_constraint("uq_ledger_entries_order_id_type", ["order_id", "type"])
