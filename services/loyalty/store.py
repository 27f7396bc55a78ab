"""Loyalty tables (SQLAlchemy 2) and the repository the service layer works through.

``ledger_entries`` is append-only: nothing updates or deletes an entry. ``accounts``
caches each customer's balance (the sum of their entries) so a balance read is one row;
both change in the same transaction, and :meth:`LoyaltyRepository.inconsistent_accounts`
checks that they agree. ``UNIQUE (order_id, type)`` makes "one award, one redemption and
one reversal of each per order" a database guarantee, and the ``CHECK`` constraints keep
balances non-negative even if a bug slipped past the domain.

Locking: writers call :func:`begin_write` first — on SQLite that takes the database write
lock (``BEGIN IMMEDIATE``); on PostgreSQL the customer's account row is locked with
``SELECT … FOR UPDATE`` (:meth:`LoyaltyRepository.lock_account`), so concurrent
redemptions of one customer run one after the other and can never overdraw.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from charter.db import service_metadata

from .domain import EntryType


class LoyaltyBase(DeclarativeBase):
    """Declarative base of the loyalty service only (its own metadata)."""

    metadata = service_metadata()


metadata = LoyaltyBase.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class AccountRow(LoyaltyBase):
    __tablename__ = "accounts"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (CheckConstraint("balance >= 0", name="balance"),)


class EntryRow(LoyaltyBase):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.customer_id", ondelete="RESTRICT"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(24), nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    shortfall: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    balance_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        UniqueConstraint("order_id", "type", name="uq_ledger_entries_order_id_type"),
        CheckConstraint("balance_after >= 0", name="balance_after"),
        CheckConstraint("shortfall >= 0", name="shortfall"),
        CheckConstraint(
            "type IN ('award', 'redemption', 'award_reversal', 'redemption_reversal')",
            name="type",
        ),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
    )


def begin_write(session: Session) -> None:
    """Start a write transaction: on SQLite take the write lock now (``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


class LoyaltyRepository:
    """Queries and changes, inside the caller's session (unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # accounts -----------------------------------------------------------------------
    def account(self, customer_id: str) -> AccountRow | None:
        return self.session.get(AccountRow, customer_id)

    def lock_account(self, customer_id: str) -> AccountRow:
        """The customer's account, created if missing, locked until the transaction ends."""
        dialect = self.session.get_bind().dialect.name
        now = utcnow()
        values = {"customer_id": customer_id, "balance": 0, "created_at": now,
                  "updated_at": now}
        if dialect == "postgresql":
            stmt = postgresql.insert(AccountRow).values(**values).on_conflict_do_nothing()
            self.session.execute(stmt)
        elif dialect == "sqlite":
            self.session.execute(
                sqlite.insert(AccountRow).values(**values).on_conflict_do_nothing()
            )
        elif self.account(customer_id) is None:  # pragma: no cover - other databases
            self.session.add(AccountRow(**values))
            self.session.flush()
        row = self.session.scalars(
            select(AccountRow)
            .where(AccountRow.customer_id == customer_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        return row

    def set_balance(self, row: AccountRow, balance: int) -> None:
        row.balance = balance
        row.updated_at = utcnow()

    # entries ------------------------------------------------------------------------
    def entry(self, order_id: str, type_: EntryType) -> EntryRow | None:
        return self.session.scalars(
            select(EntryRow).where(EntryRow.order_id == order_id, EntryRow.type == str(type_))
        ).first()

    def add_entry(
        self,
        *,
        customer_id: str,
        type_: EntryType,
        points: int,
        order_id: str,
        balance_after: int,
        amount: int | None = None,
        currency: str | None = None,
        shortfall: int = 0,
    ) -> EntryRow:
        row = EntryRow(customer_id=customer_id, type=str(type_), points=points,
                       order_id=order_id, amount=amount, currency=currency,
                       shortfall=shortfall, balance_after=balance_after,
                       created_at=utcnow())
        self.session.add(row)
        self.session.flush()
        return row

    def history(
        self, customer_id: str, offset: int, limit: int, type_: EntryType | None = None
    ) -> tuple[Sequence[EntryRow], int]:
        """The customer's entries, newest first."""
        query = select(EntryRow).where(EntryRow.customer_id == customer_id)
        if type_ is not None:
            query = query.where(EntryRow.type == str(type_))
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(EntryRow.id.desc()).offset(offset).limit(limit)
        ).all()
        return rows, total

    # consistency --------------------------------------------------------------------
    def inconsistent_accounts(self) -> list[tuple[str, int, int, int | None]]:
        """Accounts whose cached balance differs from the ledger.

        Each item is ``(customer_id, cached balance, sum of entries, last balance_after)``;
        an empty list means the cache and the ledger agree everywhere.
        """
        sums = (
            select(EntryRow.customer_id, func.coalesce(func.sum(EntryRow.points), 0)
                   .label("total"), func.max(EntryRow.id).label("last_id"))
            .group_by(EntryRow.customer_id)
            .subquery()
        )
        last = EntryRow.__table__.alias("last_entry")
        rows = self.session.execute(
            select(AccountRow.customer_id, AccountRow.balance,
                   func.coalesce(sums.c.total, 0), last.c.balance_after)
            .outerjoin(sums, sums.c.customer_id == AccountRow.customer_id)
            .outerjoin(last, last.c.id == sums.c.last_id)
            .order_by(AccountRow.customer_id)
        ).all()
        bad = []
        for customer_id, balance, total, last_after in rows:
            after = last_after if last_after is not None else 0
            if balance != total or balance != after:
                bad.append((customer_id, int(balance), int(total),
                            None if last_after is None else int(last_after)))
        return bad
