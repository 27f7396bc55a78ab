"""Notification records (SQLAlchemy 2) and the repository the service layer works through.

One row per send attempt: ``pending`` while the provider has it, then ``sent`` or
``failed`` (with the reason). ``seq`` orders the listing; ``id`` (a UUID) is the public
id. ``metadata`` also carries the shared idempotency-key table.
:class:`SqlNotificationRepository` implements the port
:class:`services.notifications.ports.NotificationRepository`: it takes and returns
:class:`~services.notifications.domain.Notification` objects (no ORM row leaves this
module) and hands out the keys as :class:`charter.idempotency.IdempotencyKeys`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from charter.db import UtcDateTime, service_metadata
from charter.idempotency import IN_PROGRESS
from charter.idempotency_store import KeyedSqlRepository, idempotency_table
from charter.messaging.inbox import Inbox, add_inbox_table
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.unit_of_work import WriteConflict

from .domain import Channel, Notification, NotificationFilter, Status


class NotificationsBase(DeclarativeBase):
    """Declarative base of the notifications service only (its own metadata)."""

    metadata = service_metadata()


metadata = NotificationsBase.metadata


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
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint("channel IN ('email', 'sms')", name="channel"),
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index("ix_notifications_recipient", "recipient"),
        Index("ix_notifications_order_id", "order_id"),
    )


idempotency_keys = idempotency_table(metadata)
# Messaging (services/notifications/messaging.py): processed message ids and the
# NotificationSent replies, written in the transactions of the records they are about.
inbox = Inbox(add_inbox_table(metadata))
outbox = Outbox(add_outbox_table(metadata))

_OUTCOME = ("status", "provider", "provider_reference", "failure_reason", "sent_at")


def _notification(row: NotificationRow) -> Notification:
    return Notification(
        id=row.id, channel=Channel(row.channel), recipient=row.recipient, body=row.body,
        status=Status(row.status), requested_by=row.requested_by, created_at=row.created_at,
        subject=row.subject, order_id=row.order_id, template=row.template,
        idempotency_key=row.idempotency_key, provider=row.provider,
        provider_reference=row.provider_reference, failure_reason=row.failure_reason,
        sent_at=row.sent_at,
    )


def _values(n: Notification, fields: tuple[str, ...]) -> dict[str, object]:
    values = {name: getattr(n, name) for name in fields}
    if "status" in values:
        values["status"] = str(n.status)
    return values


class SqlNotificationRepository(KeyedSqlRepository):
    """:class:`.ports.NotificationRepository` inside one Session (the unit of work's
    transaction).

    Its idempotency keys come from :class:`charter.idempotency_store.KeyedSqlRepository`
    (``app.notification_service`` builds the helper once: ``keyed_unit_of_work``).
    """

    keys_table = idempotency_keys

    def add(self, n: Notification) -> None:
        """Record a new notification."""
        self.session.add(NotificationRow(
            id=n.id, channel=str(n.channel), recipient=n.recipient, subject=n.subject,
            body=n.body, order_id=n.order_id, template=n.template, status=str(n.status),
            provider=n.provider, provider_reference=n.provider_reference,
            failure_reason=n.failure_reason, idempotency_key=n.idempotency_key,
            requested_by=n.requested_by, created_at=n.created_at, sent_at=n.sent_at))
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise WriteConflict(f"notification {n.id} recorded concurrently") from exc

    def save_outcome(self, n: Notification) -> None:
        """Store the outcome of a send (status, provider, reference, reason, time)."""
        self.session.execute(update(NotificationRow).where(NotificationRow.id == n.id)
                             .values(**_values(n, _OUTCOME))
                             .execution_options(synchronize_session=False))

    def release_claim(self, scope: str, key: str) -> None:
        """Forget an in-progress idempotency claim, so a retry of ``key`` runs again."""
        t = idempotency_keys
        self.session.execute(delete(t).where(t.c.scope == scope, t.c.key == key,
                                             t.c.status == IN_PROGRESS))

    def get(self, notification_id: str) -> Notification | None:
        row = self.session.scalars(
            select(NotificationRow).where(NotificationRow.id == notification_id)
        ).first()
        return None if row is None else _notification(row)

    def list(self, flt: NotificationFilter, offset: int, limit: int
             ) -> tuple[list[Notification], int]:
        """Matching notifications, newest first, and how many match in all."""
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
        return [_notification(r) for r in rows], total
