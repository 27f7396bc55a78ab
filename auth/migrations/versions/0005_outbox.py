"""auth: outbox (auth.UserRegistered written in the transaction that creates the user)

Revision ID: 0005_auth_outbox
Revises: 0004_auth_user_disabled
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from charter.migration_ops import create_outbox_v1, drop_outbox_v1

revision: str = "0005_auth_outbox"
down_revision: str | None = "0004_auth_user_disabled"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_v1(op)


def downgrade() -> None:
    drop_outbox_v1(op)
