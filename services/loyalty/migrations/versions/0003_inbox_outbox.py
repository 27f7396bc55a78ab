"""loyalty: the inbox (processed message ids) and the outbox (reply events).

Revision ID: loyalty_0003
Revises: loyalty_0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from charter.migration_ops import (
    create_inbox_v1,
    create_outbox_v1,
    drop_inbox_v1,
    drop_outbox_v1,
)

revision: str = "loyalty_0003"
down_revision: str | None = "loyalty_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_inbox_v1(op)
    create_outbox_v1(op)


def downgrade() -> None:
    drop_outbox_v1(op)
    drop_inbox_v1(op)
