"""Table shapes that several services' migrations create, one function per version.

The outbox and the inbox (:mod:`charter.messaging.outbox`, :mod:`charter.messaging.inbox`)
live in each publishing or consuming service's own database, so each service's Alembic
history creates them. These functions are that DDL, written once. They are **frozen**: a
migration must go on creating exactly what it created when it was written, so a later
change of shape is a new function (``create_outbox_v2``) used by a new migration, never
an edit of these.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def create_outbox_v1(op: Any) -> None:
    """``outbox`` as :func:`charter.messaging.outbox.add_outbox_table` defines it (v1)."""
    op.create_table(
        "outbox",
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("routing_key", sa.String(160), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        sqlite_autoincrement=True,
    )
    unsent = sa.text("sent_at IS NULL")
    op.create_index("ix_outbox_unsent", "outbox", ["position"], sqlite_where=unsent,
                    postgresql_where=unsent)
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"])


def drop_outbox_v1(op: Any) -> None:
    """Undo :func:`create_outbox_v1`."""
    op.drop_index("ix_outbox_sent_at", table_name="outbox")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")


def create_inbox_v1(op: Any) -> None:
    """``processed_messages`` as :func:`charter.messaging.inbox.add_inbox_table` defines
    it (v1)."""
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(80), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_processed_messages"),
    )
    op.create_index("ix_processed_messages_processed_at", "processed_messages",
                    ["processed_at"])


def drop_inbox_v1(op: Any) -> None:
    """Undo :func:`create_inbox_v1`."""
    op.drop_index("ix_processed_messages_processed_at", table_name="processed_messages")
    op.drop_table("processed_messages")
