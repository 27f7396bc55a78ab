"""Payments persistence: SQLAlchemy 2 Core tables and the repository the use cases use.

The tables live in the service's own :data:`metadata` (with the shared idempotency-key
table). Card numbers are never stored: only the brand and the last four digits.
Writers call :func:`begin_write` first (SQLite: ``BEGIN IMMEDIATE``, one writer at a
time) and lock the payment row (``SELECT … FOR UPDATE`` on PostgreSQL) before changing
it, so two concurrent captures or refunds of one payment are serialised and the second
sees the first's result. ``CHECK`` constraints guard the amounts as a last line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    String,
    Table,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from charter.db import NAMING_CONVENTION_FK_REFERRED, service_metadata
from charter.idempotency import idempotency_table

from . import domain

metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)

payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(24), nullable=False),
    Column("captured_amount", BigInteger, nullable=False, server_default="0"),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("method_type", String(8), nullable=False),
    Column("card_brand", String(16), nullable=True),
    Column("card_last4", String(4), nullable=True),
    Column("method_token", String(64), nullable=True),
    Column("description", String(200), nullable=True),
    Column("provider", String(32), nullable=False),
    Column("provider_reference", String(64), nullable=False),
    Column("capture_reference", String(64), nullable=True),
    Column("void_reference", String(64), nullable=True),
    Column("decline_code", String(40), nullable=True),
    Column("decline_message", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured_range"),
    CheckConstraint(
        "refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded_range"
    ),
    Index("ix_payments_order_id", "order_id"),
    Index("ix_payments_customer_id_created_at", "customer_id", "created_at"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "payment_id",
        String(40),
        ForeignKey("payments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(200), nullable=True),
    Column("provider_reference", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_refunds_payment_id", "payment_id"),
)

idempotency_keys = idempotency_table(metadata)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def begin_write(session: Session) -> None:
    """Start a write transaction: on SQLite take the write lock now (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


@dataclass(frozen=True)
class PaymentFilter:
    customer_id: str | None = None
    order_id: str | None = None
    status: str | None = None


class PaymentsRepository:
    """Queries and changes inside the caller's unit of work."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # reads -----------------------------------------------------------------------------
    def row(self, payment_id: str, *, lock: bool = False) -> RowMapping | None:
        query = select(payments).where(payments.c.id == payment_id)
        if lock:
            query = query.with_for_update()
        return self.session.execute(query).mappings().first()

    def refunds_of(self, payment_ids: Sequence[str]) -> dict[str, list[RowMapping]]:
        found: dict[str, list[RowMapping]] = {pid: [] for pid in payment_ids}
        if not payment_ids:
            return found
        rows = self.session.execute(
            select(refunds)
            .where(refunds.c.payment_id.in_(list(payment_ids)))
            .order_by(refunds.c.created_at, refunds.c.id)
        ).mappings()
        for row in rows:
            found[row["payment_id"]].append(row)
        return found

    def page(self, flt: PaymentFilter, offset: int, limit: int
             ) -> tuple[list[RowMapping], int]:
        query = select(payments)
        if flt.customer_id is not None:
            query = query.where(payments.c.customer_id == flt.customer_id)
        if flt.order_id is not None:
            query = query.where(payments.c.order_id == flt.order_id)
        if flt.status is not None:
            query = query.where(payments.c.status == flt.status)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.execute(
            query.order_by(payments.c.created_at.desc(), payments.c.id.desc())
            .offset(offset)
            .limit(limit)
        ).mappings()
        return list(rows), int(total)

    @staticmethod
    def to_domain(row: RowMapping) -> domain.Payment:
        return domain.Payment(
            id=row["id"],
            order_id=row["order_id"],
            customer_id=row["customer_id"],
            amount=int(row["amount"]),
            currency=row["currency"],
            status=domain.PaymentStatus(row["status"]),
            captured_amount=int(row["captured_amount"]),
            refunded_amount=int(row["refunded_amount"]),
        )

    # writes ----------------------------------------------------------------------------
    def add(
        self,
        payment: domain.Payment,
        *,
        method: domain.PaymentMethod,
        created_by: str,
        description: str | None,
        provider: str,
        provider_reference: str,
        decline_code: str | None,
        decline_message: str | None,
    ) -> None:
        now = utcnow()
        self.session.execute(
            insert(payments).values(
                id=payment.id,
                order_id=payment.order_id,
                customer_id=payment.customer_id,
                created_by=created_by,
                amount=payment.amount,
                currency=payment.currency,
                status=str(payment.status),
                captured_amount=payment.captured_amount,
                refunded_amount=payment.refunded_amount,
                method_type=method.kind,
                card_brand=method.brand,
                card_last4=method.last4,
                method_token=method.token,
                description=description,
                provider=provider,
                provider_reference=provider_reference,
                decline_code=decline_code,
                decline_message=decline_message,
                created_at=now,
                updated_at=now,
            )
        )

    def save(self, payment: domain.Payment, **references: Any) -> None:
        """Store the payment's new state (and any provider reference given by name)."""
        self.session.execute(
            update(payments)
            .where(payments.c.id == payment.id)
            .values(
                status=str(payment.status),
                captured_amount=payment.captured_amount,
                refunded_amount=payment.refunded_amount,
                updated_at=utcnow(),
                **references,
            )
        )

    def add_refund(self, refund_id: str, payment_id: str, amount: int, reason: str | None,
                   provider_reference: str) -> RowMapping:
        self.session.execute(
            insert(refunds).values(
                id=refund_id,
                payment_id=payment_id,
                amount=amount,
                reason=reason,
                provider_reference=provider_reference,
                created_at=utcnow(),
            )
        )
        row = self.session.execute(
            select(refunds).where(refunds.c.id == refund_id)
        ).mappings().one()
        return row
