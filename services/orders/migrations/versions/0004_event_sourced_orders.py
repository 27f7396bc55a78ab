"""orders: event-sourced (events, projection_checkpoints), outbox, inbox, order_contacts

Every order stored before gets one ``OrderImported`` event holding its whole state, so its
stream replays to what the row said; the old audit trail (``order_events``) is dropped and
the e-mail moves from ``orders`` to ``order_contacts`` (personal data stays out of events).

Revision ID: orders_0004
Revises: orders_0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from charter.migration_ops import (
    create_inbox_v1,
    create_outbox_v1,
    drop_inbox_v1,
    drop_outbox_v1,
)

revision: str = "orders_0004"
down_revision: str | None = "orders_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FOLLOW_UPS = ("loyalty", "notification", "release", "loyalty_reversal")


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", POSITION, primary_key=True, autoincrement=True),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_events_version_positive"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint("stream_id", "version", name="uq_events_stream_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("position", POSITION, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("position >= 0",
                           name="ck_projection_checkpoints_position_not_negative"),
    )
    op.create_table(
        "order_contacts",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("payment_method", sa.String(64), nullable=True),
    )
    create_outbox_v1(op)
    create_inbox_v1(op)
    _import_existing_orders()
    op.drop_table("order_events")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("customer_email")
        batch.add_column(sa.Column("checkout", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("stock_returned", sa.String(16), nullable=True))


def _import_existing_orders() -> None:
    """One ``OrderImported`` event (version 1) per order row, and its e-mail contact."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT * FROM orders")).mappings().all()
    now = datetime.now(UTC)
    events = sa.table("events", sa.column("stream_id"), sa.column("version"),
                      sa.column("event_id"), sa.column("type"), sa.column("data", sa.JSON),
                      sa.column("metadata", sa.JSON), sa.column("recorded_at"))
    contacts = sa.table("order_contacts", sa.column("order_id"), sa.column("email"))
    for row in rows:
        lines = conn.execute(sa.text(
            "SELECT product_id, sku, name, unit_price, currency, quantity FROM order_lines "
            "WHERE order_id = :id ORDER BY position"), {"id": row["id"]}).mappings().all()
        docs = [{k: (int(v) if k in ("product_id", "unit_price", "quantity") else v)
                 for k, v in line.items()} for line in lines]
        shortages = row["shortages"]
        if isinstance(shortages, str):
            shortages = json.loads(shortages)
        data = {
            "customer_id": row["customer_id"], "currency": row["currency"],
            "source": row["source"], "lines": docs,
            "total": sum(d["unit_price"] * d["quantity"] for d in docs),
            "item_count": sum(d["quantity"] for d in docs),
            "created_at": _iso(_utc(row["created_at"])), "status": row["status"],
            "reason": row["reason"], "rejection_code": row["rejection_code"],
            "shortages": shortages, "payment_id": row["payment_id"],
            "payment_status": row["payment_status"],
            **{f"{w}_status": row[f"{w}_status"] for w in FOLLOW_UPS},
        }
        updated = _utc(row["updated_at"])
        conn.execute(sa.insert(events).values(
            stream_id=row["id"], version=1, event_id=str(uuid.uuid4()), type="OrderImported",
            data=data, metadata={"occurred_at": _iso(updated), "correlation_id": None,
                                 "causation_id": None, "saga_id": None},
            recorded_at=now))
        if row["customer_email"]:
            conn.execute(sa.insert(contacts).values(order_id=row["id"],
                                                    email=row["customer_email"]))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("stock_returned")
        batch.drop_column("checkout")
        batch.add_column(sa.Column("customer_email", sa.String(320), nullable=True))
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
    op.execute("UPDATE orders SET customer_email = (SELECT email FROM order_contacts "
               "WHERE order_contacts.order_id = orders.id)")
    drop_inbox_v1(op)
    drop_outbox_v1(op)
    op.drop_table("order_contacts")
    op.drop_table("projection_checkpoints")
    op.drop_table("events")
