"""Loyalty tables (SQLAlchemy 2) and the repository the service layer works through.

``ledger_entries`` is append-only: nothing updates or deletes an entry. ``accounts``
caches each customer's balance (the sum of their entries) so a balance read is one row;
both change in the same transaction, and :meth:`SqlLoyaltyRepository.inconsistent_accounts`
checks that they agree. The unique indexes make the idempotency keys a database
guarantee: one award and one award reversal per order platform-wide
(``ux_ledger_entries_award_order``), one redemption and one redemption reversal per
order *of a customer* (``UNIQUE (customer_id, order_id, type)``; see
:mod:`services.loyalty.domain` for why). The ``CHECK`` constraints keep balances
non-negative even if a bug slipped past the domain.

Locking: writers run in a write unit of work (:meth:`charter.db.SqlUnitOfWork.write`):
on SQLite that takes the database write lock (``BEGIN IMMEDIATE``); on PostgreSQL the
customer's account row is locked with ``SELECT … FOR UPDATE``
(:meth:`SqlLoyaltyRepository.lock_account`), so concurrent redemptions of one customer
run one after the other and can never overdraw.

:class:`SqlLoyaltyRepository` implements the port
:class:`services.loyalty.ports.LoyaltyRepository`: it takes and returns domain objects
only (:mod:`services.loyalty.domain`), no ORM row leaves this module, and a unique index
that refuses an entry becomes :class:`charter.unit_of_work.WriteConflict`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from charter.db import UtcDateTime, service_metadata, utcnow
from charter.messaging.inbox import Inbox, add_inbox_table
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.unit_of_work import WriteConflict

from .domain import Account, Entry, EntryType
from .ports import LedgerLookups

AWARD_TYPES = "type IN ('award', 'award_reversal')"


class LoyaltyBase(DeclarativeBase):
    """Declarative base of the loyalty service only (its own metadata)."""

    metadata = service_metadata()


metadata = LoyaltyBase.metadata

# Messaging (services/loyalty/messaging.py): processed message ids and the reply events,
# both written in the transaction of the points they are about.
inbox = Inbox(add_inbox_table(metadata))
outbox = Outbox(add_outbox_table(metadata))


class AccountRow(LoyaltyBase):
    __tablename__ = "accounts"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

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
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("customer_id", "order_id", "type"),
        Index("ux_ledger_entries_award_order", "order_id", "type", unique=True,
              sqlite_where=text(AWARD_TYPES), postgresql_where=text(AWARD_TYPES)),
        CheckConstraint("balance_after >= 0", name="balance_after"),
        CheckConstraint("shortfall >= 0", name="shortfall"),
        CheckConstraint(
            "type IN ('award', 'redemption', 'award_reversal', 'redemption_reversal')",
            name="type",
        ),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
    )


def _entry(row: EntryRow) -> Entry:
    return Entry(customer_id=row.customer_id, type=EntryType(row.type), points=row.points,
                 order_id=row.order_id, balance_after=row.balance_after, amount=row.amount,
                 currency=row.currency, shortfall=row.shortfall, id=row.id,
                 created_at=row.created_at)


def _account(row: AccountRow) -> Account:
    return Account(row.customer_id, row.balance, row.updated_at)


# The statements of every award, built once with bound parameters (building a statement
# and its cache key per call cost more than running it on SQLite).
_CREATE_ACCOUNT = {
    "postgresql": postgresql.insert(AccountRow).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(AccountRow).on_conflict_do_nothing(),
}
_LOCK_ACCOUNT = (select(AccountRow)
                 .where(AccountRow.customer_id == bindparam("b_customer"))
                 .with_for_update()
                 .execution_options(populate_existing=True))
_SAVE_BALANCE = (update(AccountRow)
                 .where(AccountRow.customer_id == bindparam("b_customer"))
                 .values(balance=bindparam("b_balance"), updated_at=bindparam("b_updated_at"))
                 .execution_options(synchronize_session=False))
_ENTRIES = (select(EntryRow)
            .where(EntryRow.order_id == bindparam("b_order"),
                   EntryRow.type == bindparam("b_type"))
            .order_by(EntryRow.id))
_CUSTOMER_ENTRIES = _ENTRIES.where(EntryRow.customer_id == bindparam("b_customer"))


class SqlLoyaltyRepository(LedgerLookups):
    """:class:`~services.loyalty.ports.LoyaltyRepository` on one Session (the unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # accounts -----------------------------------------------------------------------
    def account(self, customer_id: str) -> Account | None:
        row = self.session.get(AccountRow, customer_id)
        return None if row is None else _account(row)

    def lock_account(self, customer_id: str) -> Account:
        """The customer's account, created if missing, locked until the transaction ends."""
        now = utcnow()
        values = {"customer_id": customer_id, "balance": 0, "created_at": now,
                  "updated_at": now}
        create = _CREATE_ACCOUNT.get(self.session.get_bind().dialect.name)
        if create is not None:
            self.session.execute(create, values)
        elif self.session.get(AccountRow, customer_id) is None:  # pragma: no cover
            self.session.add(AccountRow(**values))
            self.session.flush()
        row = self.session.scalars(_LOCK_ACCOUNT, {"b_customer": customer_id}).one()
        return _account(row)

    def save_balance(self, account: Account) -> None:
        """Store the account's new balance (its row is locked by :meth:`lock_account`)."""
        self.session.execute(_SAVE_BALANCE, {"b_customer": account.customer_id,
                                             "b_balance": account.balance,
                                             "b_updated_at": utcnow()})

    # entries ------------------------------------------------------------------------
    def _entries(self, order_id: str, type_: EntryType,
                 customer_id: str | None = None) -> list[Entry]:
        params = {"b_order": order_id, "b_type": str(type_)}
        if customer_id is None:
            return [_entry(r) for r in self.session.scalars(_ENTRIES, params)]
        params["b_customer"] = customer_id
        return [_entry(r) for r in self.session.scalars(_CUSTOMER_ENTRIES, params)]

    def add(self, entry: Entry) -> Entry:
        """Record ``entry``; :class:`WriteConflict` when a concurrent writer was first."""
        row = EntryRow(customer_id=entry.customer_id, type=str(entry.type),
                       points=entry.points, order_id=entry.order_id, amount=entry.amount,
                       currency=entry.currency, shortfall=entry.shortfall,
                       balance_after=entry.balance_after, created_at=utcnow())
        self.session.add(row)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise WriteConflict(
                f"{entry.type} of order {entry.order_id} recorded concurrently") from exc
        return entry.recorded(row.id, row.created_at)

    def history(
        self, customer_id: str, offset: int, limit: int, type_: EntryType | None = None
    ) -> tuple[list[Entry], int]:
        """The customer's entries, newest first, and how many there are in all."""
        query = select(EntryRow).where(EntryRow.customer_id == customer_id)
        if type_ is not None:
            query = query.where(EntryRow.type == str(type_))
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(EntryRow.id.desc()).offset(offset).limit(limit)
        ).all()
        return [_entry(r) for r in rows], total

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
