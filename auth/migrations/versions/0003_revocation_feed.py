"""auth: the revocation log behind GET /oauth/revocations (jti, grant and subject entries)

Revision ID: 0003_auth_revocation_feed
Revises: 0002_auth_code_replay
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0003_auth_revocation_feed"
down_revision = "0002_auth_code_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_revocations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("until", sa.Integer, nullable=False),
        sa.Column("revoked_at", sa.Integer, nullable=False),
        sa.Column("recorded_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_oauth_revocations_until", "oauth_revocations", ["until"])
    op.create_index("ix_oauth_revocations_recorded_ms", "oauth_revocations", ["recorded_ms"])


def downgrade() -> None:
    op.drop_index("ix_oauth_revocations_recorded_ms", table_name="oauth_revocations")
    op.drop_index("ix_oauth_revocations_until", table_name="oauth_revocations")
    op.drop_table("oauth_revocations")
