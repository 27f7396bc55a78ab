"""Payments persistence: SQLAlchemy 2 Core tables and :class:`SqlPaymentsRepository`, the
SQL adapter of :class:`.ports.PaymentsRepository`.

The tables live in the service's own :data:`metadata` (with the shared idempotency-key
table). No row leaves this module: the repository hands out and takes back
:class:`.domain.Payment` objects, and a constraint refusing a write (``IntegrityError``)
leaves it as :class:`charter.unit_of_work.WriteConflict`. Card numbers are never stored:
only the brand and the last four digits. Writers run in ``uow.write()`` (SQLite:
``BEGIN IMMEDIATE``, one writer at a time) and lock the payment row (``SELECT … FOR
UPDATE`` on PostgreSQL) before changing it, so two concurrent captures or refunds of one
payment are serialised and the second sees the first's result. ``CHECK`` constraints
guard the amounts as a last line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.sql import Executable

from charter.db import (
    NAMING_CONVENTION_FK_REFERRED,
    UtcDateTime,
    service_metadata,
    utcnow,
    write_conflicts,
)
from charter.idempotency_store import KeyedSqlRepository, idempotency_table

from . import domain
from .domain import MethodSummary, Payment, PaymentFilter, Refund

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
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
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
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_refunds_payment_id", "payment_id"),
)

idempotency_keys = idempotency_table(metadata)

# The statements of every authorisation and capture, built once with bound parameters
# (building a statement and its cache key per call cost more than running it on SQLite).
_PAYMENT = select(payments).where(payments.c.id == bindparam("b_payment"))
_PAYMENT_LOCKED = _PAYMENT.with_for_update()
_REFUNDS = (select(refunds)
            .where(refunds.c.payment_id.in_(bindparam("b_payments", expanding=True)))
            .order_by(refunds.c.created_at, refunds.c.id))
_INSERT_PAYMENT = insert(payments)
_UPDATE_PAYMENT = update(payments).where(payments.c.id == bindparam("b_payment"))


def _refund(row: Any) -> Refund:
    return Refund(id=row.id, payment_id=row.payment_id, amount=int(row.amount),
                  reason=row.reason, provider_reference=row.provider_reference,
                  created_at=row.created_at)


def _payment(row: Any, refund_list: list[Refund]) -> Payment:
    return Payment(
        id=row.id,
        order_id=row.order_id,
        customer_id=row.customer_id,
        amount=int(row.amount),
        currency=row.currency,
        status=domain.PaymentStatus(row.status),
        captured_amount=int(row.captured_amount),
        refunded_amount=int(row.refunded_amount),
        created_by=row.created_by,
        method=MethodSummary(row.method_type, brand=row.card_brand, last4=row.card_last4,
                             token=row.method_token),
        description=row.description,
        provider=row.provider,
        provider_reference=row.provider_reference,
        capture_reference=row.capture_reference,
        void_reference=row.void_reference,
        decline_code=row.decline_code,
        decline_message=row.decline_message,
        refunds=refund_list,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlPaymentsRepository(KeyedSqlRepository):
    """:class:`.ports.PaymentsRepository` inside one Session (the unit of work's transaction).

    Its idempotency keys come from :class:`charter.idempotency_store.KeyedSqlRepository`
    (``app.payments_service`` builds the helper once: ``keyed_unit_of_work``).
    """

    keys_table = idempotency_keys

    def _write(self, statement: Executable, params: dict[str, Any] | None = None) -> None:
        """Execute a write; a constraint refusing it becomes :class:`WriteConflict`."""
        with write_conflicts():
            self.session.execute(statement, params)

    # reads -----------------------------------------------------------------------------
    def get(self, payment_id: str, *, lock: bool = False) -> Payment | None:
        """The payment with its refunds (its row locked for update when ``lock``)."""
        row = self.session.execute(_PAYMENT_LOCKED if lock else _PAYMENT,
                                   {"b_payment": payment_id}).first()
        if row is None:
            return None
        return _payment(row, self._refunds_of([payment_id])[payment_id])

    def _refunds_of(self, payment_ids: Sequence[str]) -> dict[str, list[Refund]]:
        found: dict[str, list[Refund]] = {pid: [] for pid in payment_ids}
        if not payment_ids:
            return found
        rows = self.session.execute(_REFUNDS, {"b_payments": list(payment_ids)})
        for row in rows:
            found[row.payment_id].append(_refund(row))
        return found

    def page(self, flt: PaymentFilter, offset: int, limit: int) -> tuple[list[Payment], int]:
        """One page of matching payments, newest first, and how many match in all."""
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
        ).all()
        refund_lists = self._refunds_of([r.id for r in rows])
        return [_payment(r, refund_lists[r.id]) for r in rows], int(total)

    # writes ----------------------------------------------------------------------------
    def add(self, payment: Payment) -> None:
        """Store a new payment; its timestamps become now."""
        assert payment.method is not None, "a payment is stored with its method"
        payment.created_at = payment.updated_at = utcnow()
        self._write(
            _INSERT_PAYMENT, dict(
                id=payment.id,
                order_id=payment.order_id,
                customer_id=payment.customer_id,
                created_by=payment.created_by,
                amount=payment.amount,
                currency=payment.currency,
                status=str(payment.status),
                captured_amount=payment.captured_amount,
                refunded_amount=payment.refunded_amount,
                method_type=payment.method.kind,
                card_brand=payment.method.brand,
                card_last4=payment.method.last4,
                method_token=payment.method.token,
                description=payment.description,
                provider=payment.provider,
                provider_reference=payment.provider_reference,
                decline_code=payment.decline_code,
                decline_message=payment.decline_message,
                created_at=payment.created_at,
                updated_at=payment.updated_at,
            )
        )

    def save(self, payment: Payment) -> None:
        """Store the payment's state and references; its ``updated_at`` becomes now."""
        payment.updated_at = utcnow()
        self._write(
            _UPDATE_PAYMENT, dict(
                b_payment=payment.id,
                status=str(payment.status),
                captured_amount=payment.captured_amount,
                refunded_amount=payment.refunded_amount,
                capture_reference=payment.capture_reference,
                void_reference=payment.void_reference,
                updated_at=payment.updated_at,
            )
        )

    def add_refund(self, refund: Refund) -> None:
        """Store a new refund; its ``created_at`` becomes now."""
        refund.created_at = utcnow()
        self._write(
            insert(refunds).values(
                id=refund.id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                reason=refund.reason,
                provider_reference=refund.provider_reference,
                created_at=refund.created_at,
            )
        )
