"""Create accounts and the append-only ledger_entries.

Revision ID: loyalty_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "loyalty_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_accounts_balance"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_accounts"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("shortfall", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance_after >= 0", name="ck_ledger_entries_balance_after"),
        sa.CheckConstraint("shortfall >= 0", name="ck_ledger_entries_shortfall"),
        sa.CheckConstraint(
            "type IN ('award', 'redemption', 'award_reversal', 'redemption_reversal')",
            name="ck_ledger_entries_type",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["accounts.customer_id"],
            name="fk_ledger_entries_customer_id",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("order_id", "type", name="uq_ledger_entries_order_id_type"),
    )
    op.create_index(
        "ix_ledger_entries_customer_id_id", "ledger_entries", ["customer_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_customer_id_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("accounts")
