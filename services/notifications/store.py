"""Notification records (SQLAlchemy 2) and the repository the service layer works through.

One row per send attempt: ``pending`` while the provider has it, then ``sent`` or
``failed`` (with the reason). ``seq`` orders the listing; ``id`` (a UUID) is the public
id. ``metadata`` also carries the shared idempotency-key table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from charter.db import service_metadata
from charter.idempotency import idempotency_table


class NotificationsBase(DeclarativeBase):
    """Declarative base of the notifications service only (its own metadata)."""

    metadata = service_metadata()


metadata = NotificationsBase.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class NotificationRow(NotificationsBase):
    __tablename__ = "notifications"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)
    recipient: Mapped[str] = mapped_column(String(254), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(200), nullable=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(8), nullable=False)
    provider: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provider_reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        CheckConstraint("channel IN ('email', 'sms')", name="channel"),
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index("ix_notifications_recipient", "recipient"),
        Index("ix_notifications_order_id", "order_id"),
    )


idempotency_keys = idempotency_table(metadata)


def begin_write(session: Session) -> None:
    """Start a write transaction: on SQLite take the write lock now (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


@dataclass(frozen=True)
class NotificationFilter:
    recipient: str | None = None
    order_id: str | None = None
    status: str | None = None
    channel: str | None = None


class NotificationRepository:
    """Queries and changes, inside the caller's session (unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: NotificationRow) -> NotificationRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, notification_id: str) -> NotificationRow | None:
        return self.session.scalars(
            select(NotificationRow).where(NotificationRow.id == notification_id)
        ).first()

    def list(self, flt: NotificationFilter, offset: int, limit: int
             ) -> tuple[Sequence[NotificationRow], int]:
        query = select(NotificationRow)
        if flt.recipient is not None:  # email addresses match case-insensitively
            query = query.where(func.lower(NotificationRow.recipient) == flt.recipient.lower())
        if flt.order_id is not None:
            query = query.where(NotificationRow.order_id == flt.order_id)
        if flt.status is not None:
            query = query.where(NotificationRow.status == flt.status)
        if flt.channel is not None:
            query = query.where(NotificationRow.channel == flt.channel)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(NotificationRow.seq.desc()).offset(offset).limit(limit)
        ).all()
        return rows, total
