"""auth: keep redeemed authorization codes with what they issued (replay revokes it)

Revision ID: 0002_auth_code_replay
Revises: 0001_auth_initial
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_auth_code_replay"
down_revision = "0001_auth_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_authorization_codes") as batch:
        batch.add_column(sa.Column("used_at", sa.Integer, nullable=True))
        batch.add_column(sa.Column("refresh_family_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("access_jti", sa.String(64), nullable=True))
        batch.add_column(sa.Column("access_expires_at", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_authorization_codes") as batch:
        for column in ("access_expires_at", "access_jti", "refresh_family_id", "used_at"):
            batch.drop_column(column)
