"""exchange: base_rates (the seeded rate source), last_known_rates

Revision ID: exchange_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "exchange_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_rates",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("rate", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("currency", name="pk_base_rates"),
    )
    op.create_table(
        "last_known_rates",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("rates", sa.JSON(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_last_known_rates"),
    )


def downgrade() -> None:
    op.drop_table("last_known_rates")
    op.drop_table("base_rates")
