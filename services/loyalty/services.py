"""Loyalty use cases: each runs in one unit of work and returns JSON-ready documents.

Every points operation is idempotent by its order id (the natural key — no
``Idempotency-Key`` header): repeating a request returns the first answer and changes
nothing (``Result.created`` is False), while a *different* request for an order that
already has that kind of entry is refused with 409. Broken business rules are 422
(e.g. a redemption larger than the balance), unknown orders 404.

Concurrency: each write locks the customer's account first (see ``store``), so two
redemptions of one customer are serialised and cannot overdraw; a lost race on the
``(order_id, type)`` unique index is retried once, and the retry finds the winner's entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from charter import config
from charter.db import Database
from charter.problems import Conflict, NotFound, Problem, Unprocessable

from . import domain
from .domain import EntryType
from .store import AccountRow, EntryRow, LoyaltyRepository, begin_write

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")

POINTS_PER_UNIT_ENV = "LOYALTY_POINTS_PER_UNIT"


def points_per_unit_from_env() -> int:
    """``LOYALTY_POINTS_PER_UNIT`` (default 1): points per whole currency unit of an order."""
    raw = config.env(POINTS_PER_UNIT_ENV)
    if raw is None:
        return domain.DEFAULT_POINTS_PER_UNIT
    try:
        value = int(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{POINTS_PER_UNIT_ENV} must be a whole number") from exc
    if not 0 <= value <= 1000:
        raise config.ConfigError(f"{POINTS_PER_UNIT_ENV} must be between 0 and 1000")
    return value


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (SQLite hands back naive datetimes: they are UTC)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_doc(row: EntryRow) -> Doc:
    """One ledger entry as the history shows it (``points`` is the signed change)."""
    doc: Doc = {
        "id": row.id,
        "customer_id": row.customer_id,
        "type": row.type,
        "points": row.points,
        "order_id": row.order_id,
        "amount": row.amount,
        "currency": row.currency,
        "balance_after": row.balance_after,
        "created_at": iso(row.created_at),
    }
    if row.type == EntryType.AWARD_REVERSAL:
        doc["shortfall"] = row.shortfall
    return doc


def award_doc(award: EntryRow, reversal: EntryRow | None) -> Doc:
    return {
        "order_id": award.order_id,
        "customer_id": award.customer_id,
        "status": "reversed" if reversal is not None else "awarded",
        "points": award.points,
        "amount": award.amount,
        "currency": award.currency,
        "balance_after": award.balance_after,
        "created_at": iso(award.created_at),
        "reversal": None if reversal is None else {
            "points": -reversal.points,
            "shortfall": reversal.shortfall,
            "balance_after": reversal.balance_after,
            "created_at": iso(reversal.created_at),
        },
    }


def redemption_doc(redemption: EntryRow, reversal: EntryRow | None) -> Doc:
    return {
        "order_id": redemption.order_id,
        "customer_id": redemption.customer_id,
        "status": "reversed" if reversal is not None else "redeemed",
        "points": -redemption.points,
        "balance_after": redemption.balance_after,
        "created_at": iso(redemption.created_at),
        "reversal": None if reversal is None else {
            "points": reversal.points,
            "balance_after": reversal.balance_after,
            "created_at": iso(reversal.created_at),
        },
    }


def balance_doc(customer_id: str, row: AccountRow | None) -> Doc:
    return {
        "customer_id": customer_id,
        "balance": row.balance if row is not None else 0,
        "updated_at": iso(row.updated_at) if row is not None else None,
    }


def page_doc(items: list[Doc], page: int, page_size: int, total: int) -> Doc:
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def as_problem(exc: domain.DomainError) -> Problem:
    """The HTTP answer for a refused business rule."""
    if isinstance(exc, domain.InsufficientPoints):
        return Unprocessable(str(exc), title="Insufficient points", balance=exc.balance,
                             requested=exc.requested)
    if isinstance(exc, domain.OrderConflict):
        return Conflict(str(exc), title="Order already has this entry")
    return Unprocessable(str(exc))


@contextmanager
def business_rules() -> Iterator[None]:
    try:
        yield
    except domain.DomainError as exc:
        raise as_problem(exc) from exc


@dataclass(frozen=True)
class Result:
    """A document and whether this request created it (False: an earlier one did)."""

    doc: Doc
    created: bool


class LoyaltyService:
    """The loyalty use cases over one database."""

    RETRIES = 3  # attempts of a write that lost a unique-index race

    def __init__(self, db: Database, points_per_unit: int | None = None) -> None:
        self.db = db
        self.points_per_unit = (
            points_per_unit if points_per_unit is not None else points_per_unit_from_env()
        )

    # units of work -------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[LoyaltyRepository]:
        with self.db.session() as session:
            yield LoyaltyRepository(session)

    def _write(self, work: Callable[[LoyaltyRepository], T]) -> T:
        """Run ``work`` in a write transaction; retry when a concurrent writer won a race."""
        for attempt in range(1, self.RETRIES + 1):
            try:
                with self.db.session() as session, business_rules():
                    begin_write(session)
                    return work(LoyaltyRepository(session))
            except IntegrityError as exc:
                if attempt == self.RETRIES:
                    raise Conflict("the change conflicts with a concurrent one; retry") from exc
                log.info("loyalty write lost a race (attempt %d); retrying", attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # reads ---------------------------------------------------------------------------
    def balance(self, customer_id: str) -> Doc:
        with self._read() as repo:
            return balance_doc(customer_id, repo.account(customer_id))

    def history(self, customer_id: str, page: int = 1, page_size: int = 20,
                type_: str | None = None) -> Doc:
        kind = EntryType(type_) if type_ else None
        with self._read() as repo:
            rows, total = repo.history(customer_id, (page - 1) * page_size, page_size, kind)
            return page_doc([entry_doc(r) for r in rows], page, page_size, total)

    def get_award(self, order_id: str) -> Doc:
        with self._read() as repo:
            award = repo.entry(order_id, EntryType.AWARD)
            if award is None:
                raise NotFound(f"order {order_id!r} has no award")
            return award_doc(award, repo.entry(order_id, EntryType.AWARD_REVERSAL))

    def get_redemption(self, order_id: str) -> Doc:
        with self._read() as repo:
            redemption = repo.entry(order_id, EntryType.REDEMPTION)
            if redemption is None:
                raise NotFound(f"order {order_id!r} has no redemption")
            return redemption_doc(redemption,
                                  repo.entry(order_id, EntryType.REDEMPTION_REVERSAL))

    def inconsistent_accounts(self) -> list[tuple[str, int, int, int | None]]:
        """Accounts whose cached balance disagrees with their ledger (empty = all good)."""
        with self._read() as repo:
            return repo.inconsistent_accounts()

    # awards --------------------------------------------------------------------------
    def award(self, request: domain.AwardRequest) -> Result:
        """Credit an order's points once; a repeat returns the first award."""

        def work(repo: LoyaltyRepository) -> Result:
            account_row = repo.lock_account(request.customer_id)
            existing = repo.entry(request.order_id, EntryType.AWARD)
            if existing is not None:
                if not request.same_as(existing.customer_id, existing.amount,
                                       existing.currency, existing.points):
                    raise domain.OrderConflict(
                        f"order {request.order_id!r} was already awarded with different "
                        "details (customer, amount or points)"
                    )
                reversal = repo.entry(request.order_id, EntryType.AWARD_REVERSAL)
                return Result(award_doc(existing, reversal), created=False)
            points = request.earned(self.points_per_unit)
            account = domain.Account(request.customer_id, account_row.balance)
            balance = account.award(points)
            repo.set_balance(account_row, balance)
            row = repo.add_entry(customer_id=request.customer_id, type_=EntryType.AWARD,
                                 points=points, order_id=request.order_id,
                                 balance_after=balance, amount=request.amount,
                                 currency=request.currency)
            log.info("awarded %d points for order %s", points, request.order_id)
            return Result(award_doc(row, None), created=True)

        return self._write(work)

    def reverse_award(self, order_id: str) -> Result:
        """Take an order's award back (as far as the balance allows); once per order."""

        def work(repo: LoyaltyRepository) -> Result:
            award = repo.entry(order_id, EntryType.AWARD)
            if award is None:
                raise NotFound(f"order {order_id!r} has no award to reverse")
            account_row = repo.lock_account(award.customer_id)
            reversal = repo.entry(order_id, EntryType.AWARD_REVERSAL)
            if reversal is not None:
                return Result(award_doc(award, reversal), created=False)
            account = domain.Account(award.customer_id, account_row.balance)
            taken, shortfall = account.revoke_award(award.points)
            repo.set_balance(account_row, account.balance)
            reversal = repo.add_entry(customer_id=award.customer_id,
                                      type_=EntryType.AWARD_REVERSAL, points=-taken,
                                      order_id=order_id, balance_after=account.balance,
                                      shortfall=shortfall)
            if shortfall:
                log.warning("award of order %s reversed with a shortfall of %d points",
                            order_id, shortfall)
            return Result(award_doc(award, reversal), created=True)

        return self._write(work)

    # redemptions ---------------------------------------------------------------------
    def redeem(self, customer_id: str, order_id: str, points: int) -> Result:
        """Spend points on an order once; refused (422) beyond the balance."""
        with business_rules():
            domain.check_points(points)

        def work(repo: LoyaltyRepository) -> Result:
            account_row = repo.lock_account(customer_id)
            existing = repo.entry(order_id, EntryType.REDEMPTION)
            if existing is not None:
                if (existing.customer_id, -existing.points) != (customer_id, points):
                    raise domain.OrderConflict(
                        f"order {order_id!r} already redeemed {-existing.points} points"
                        + ("" if existing.customer_id == customer_id
                           else " for another customer")
                    )
                reversal = repo.entry(order_id, EntryType.REDEMPTION_REVERSAL)
                return Result(redemption_doc(existing, reversal), created=False)
            account = domain.Account(customer_id, account_row.balance)
            balance = account.redeem(points)
            repo.set_balance(account_row, balance)
            row = repo.add_entry(customer_id=customer_id, type_=EntryType.REDEMPTION,
                                 points=-points, order_id=order_id, balance_after=balance)
            return Result(redemption_doc(row, None), created=True)

        return self._write(work)

    def reverse_redemption(self, order_id: str) -> Result:
        """Give an order's redeemed points back, once."""

        def work(repo: LoyaltyRepository) -> Result:
            redemption = repo.entry(order_id, EntryType.REDEMPTION)
            if redemption is None:
                raise NotFound(f"order {order_id!r} has no redemption to reverse")
            account_row = repo.lock_account(redemption.customer_id)
            reversal = repo.entry(order_id, EntryType.REDEMPTION_REVERSAL)
            if reversal is not None:
                return Result(redemption_doc(redemption, reversal), created=False)
            account = domain.Account(redemption.customer_id, account_row.balance)
            balance = account.refund_redemption(-redemption.points)
            repo.set_balance(account_row, balance)
            reversal = repo.add_entry(customer_id=redemption.customer_id,
                                      type_=EntryType.REDEMPTION_REVERSAL,
                                      points=-redemption.points, order_id=order_id,
                                      balance_after=balance)
            return Result(redemption_doc(redemption, reversal), created=True)

        return self._write(work)
