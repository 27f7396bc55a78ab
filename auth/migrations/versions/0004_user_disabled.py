"""auth: users.disabled_at (a disabled account cannot sign in; its tokens are revoked)

Revision ID: 0004_auth_user_disabled
Revises: 0003_auth_revocation_feed
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = "0004_auth_user_disabled"
down_revision = "0003_auth_revocation_feed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
