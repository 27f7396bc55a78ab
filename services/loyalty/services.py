"""Loyalty use cases: each runs in one unit of work and decides who may do what.

Authorisation lives here (every use case takes the caller's :class:`Principal`):

* a customer reads and redeems only their own points; naming another customer
  explicitly (``/customers/{id}``, ``customer_id`` in a body or query) is 403;
* an award or redemption that is not the caller's is answered exactly like one that
  does not exist (404) — and a redemption is keyed per customer, so redeeming on an
  order id another customer already used is answered exactly like a fresh id (201);
  nothing a customer can send tells them whether someone else's order id exists;
* awards and reversals are for staff, admins and platform services only (403 for
  customers, even with ``loyalty:write``); they see and act on everyone's points.

Every points operation is idempotent by its order id (no ``Idempotency-Key`` header):
repeating a request returns the first answer and changes nothing (``Result.created`` is
False), while a *different* request for the same key is refused with 409. Broken
business rules are 422 (e.g. a redemption larger than the balance).

Concurrency: each write locks the customer's account first
(:meth:`~.ports.LoyaltyRepository.lock_account`), so two
redemptions of one customer are serialised and cannot overdraw; a lost race on a unique
index is retried, and the retry finds the winner's entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from charter.problems import Conflict, Forbidden, NotFound, Problem, Unprocessable
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork, WriteConflict
from charter.usecases import Page, Refusals

from . import domain
from .domain import DEFAULT_POINTS_PER_UNIT, Account, Award, Entry, EntryType, Redemption
from .ports import LoyaltyRepository

log = logging.getLogger(__name__)

T = TypeVar("T")


def as_problem(exc: domain.DomainError) -> Problem:
    """The HTTP answer for a refused business rule."""
    if isinstance(exc, domain.InsufficientPoints):
        return Unprocessable(str(exc), kind="insufficient-points", balance=exc.balance,
                             requested=exc.requested)
    if isinstance(exc, domain.OrderConflict):
        return Conflict(str(exc), kind="order-entry-exists")
    return Unprocessable(str(exc))


business_rules = Refusals(domain.DomainError, as_problem)
"""``with business_rules():`` answers a refused business rule with its problem."""


@dataclass(frozen=True)
class Result(Generic[T]):
    """What a write answered and whether this request created it (False: an earlier one)."""

    value: T
    created: bool


def _not_found(order_id: str, what: str) -> NotFound:
    return NotFound(f"order {order_id!r} has no {what}")


class LoyaltyService:
    """The loyalty use cases over a unit of work handing out a :class:`LoyaltyRepository`.

    ``points_per_unit`` is the award rule (points per whole currency unit of an order);
    ``app.py`` takes it from the settings (``LOYALTY_POINTS_PER_UNIT``).
    """

    RETRIES = 3  # attempts of a write that lost a unique-index race

    def __init__(self, uow: UnitOfWork[LoyaltyRepository],
                 points_per_unit: int = DEFAULT_POINTS_PER_UNIT) -> None:
        self.uow = uow
        self.points_per_unit = points_per_unit

    # units of work -------------------------------------------------------------------
    def _write(self, work: Callable[[LoyaltyRepository], T]) -> T:
        """Run ``work`` in one write unit of work; retry when a concurrent writer won."""
        for attempt in range(1, self.RETRIES + 1):
            try:
                with self.uow.write() as repo, business_rules():
                    return work(repo)
            except WriteConflict as exc:
                if attempt == self.RETRIES:
                    raise Conflict("the change conflicts with a concurrent one; retry") from exc
                log.info("loyalty write lost a race (attempt %d); retrying", attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # whose points --------------------------------------------------------------------
    @staticmethod
    def _owner(principal: Principal, customer_id: str | None, *, required: bool) -> str:
        """The customer a use case acts on: the caller, or one they name and may act on.

        ``required``: privileged callers must name the customer (they have no points). The
        body is well-formed without it (a customer omits it), so its absence is a 422 for
        the caller, not a 400: the spec cannot make a field required per role.
        """
        if customer_id is None:
            if principal.is_privileged and required:
                raise Unprocessable("customer_id is required when staff or a service acts")
            return principal.sub
        if not principal.can_access(customer_id):
            raise Forbidden("a customer may only use their own points")
        return customer_id

    # reads ---------------------------------------------------------------------------
    def balance(self, principal: Principal, customer_id: str | None = None) -> Account:
        """The caller's balance, or ``customer_id``'s (their own, or anyone's if privileged)."""
        owner = self._owner(principal, customer_id, required=False)
        with self.uow.read() as repo:
            return repo.account(owner) or Account(owner)

    def history(self, principal: Principal, customer_id: str | None = None, page: int = 1,
                page_size: int = 20, type_: str | None = None) -> Page[Entry]:
        """A customer's ledger entries, newest first (same rule as :meth:`balance`)."""
        owner = self._owner(principal, customer_id, required=False)
        kind = EntryType(type_) if type_ else None
        with self.uow.read() as repo:
            items, total = repo.history(owner, Page.offset(page, page_size), page_size, kind)
        return Page(items, page, page_size, total)

    def get_award(self, principal: Principal, order_id: str) -> Award:
        """An order's award; someone else's is answered like a missing one (404)."""
        with self.uow.read() as repo:
            award = repo.award(order_id)
        if award is None or not principal.can_access(award.entry.customer_id):
            raise _not_found(order_id, "award")
        return award

    def get_redemption(self, principal: Principal, order_id: str,
                       customer_id: str | None = None) -> Redemption:
        """A redemption: the caller's for ``order_id`` (privileged callers: see
        :meth:`_find_redemption`)."""
        with self.uow.read() as repo:
            return self._find_redemption(repo, principal, order_id, customer_id)

    def _find_redemption(self, repo: LoyaltyRepository, principal: Principal, order_id: str,
                         customer_id: str | None) -> Redemption:
        """A customer finds only their own; staff and services name the customer, or get
        the order id's only redemption (409 when several customers used that id)."""
        if customer_id is None and principal.is_privileged:
            owners = repo.redemption_owners(order_id)
            if len(owners) > 1:
                raise Conflict(f"{len(owners)} customers redeemed points with order id "
                               f"{order_id!r}: name the customer_id")
            customer_id = owners[0] if owners else None
            if customer_id is None:
                raise _not_found(order_id, "redemption")
        owner = self._owner(principal, customer_id, required=False)
        redemption = repo.redemption(owner, order_id)
        if redemption is None:
            raise _not_found(order_id, "redemption")
        return redemption

    def inconsistent_accounts(self) -> list[tuple[str, int, int, int | None]]:
        """Accounts whose cached balance disagrees with their ledger (empty = all good)."""
        with self.uow.read() as repo:
            return repo.inconsistent_accounts()

    # awards (staff and services) -------------------------------------------------------
    def award(self, principal: Principal, customer_id: str, order_id: str, *,
              amount: int | None = None, currency: str | None = None,
              points: int | None = None) -> Result[Award]:
        """Credit an order's points once (either ``points``, or ``amount`` in
        ``currency``); a repeat returns the first award."""
        principal.require_privileged()
        with business_rules():
            request = domain.AwardRequest(customer_id, order_id, amount=amount,
                                          currency=currency, points=points)

        def work(repo: LoyaltyRepository) -> Result[Award]:
            account = repo.lock_account(request.customer_id)
            existing = repo.award(request.order_id)
            if existing is not None:
                if not existing.answers(request):
                    raise domain.OrderConflict(
                        f"order {request.order_id!r} was already awarded with different "
                        "details (customer, amount or points)"
                    )
                return Result(existing, created=False)
            entry = repo.add(account.award_entry(request, self.points_per_unit))
            repo.save_balance(account)
            log.info("awarded %d points for order %s", entry.points, request.order_id)
            return Result(Award(entry), created=True)

        return self._write(work)

    def reverse_award(self, principal: Principal, order_id: str) -> Result[Award]:
        """Take an order's award back (as far as the balance allows); once per order."""
        principal.require_privileged()

        def work(repo: LoyaltyRepository) -> Result[Award]:
            award = repo.award(order_id)
            if award is None:
                raise NotFound(f"order {order_id!r} has no award to reverse")
            account = repo.lock_account(award.entry.customer_id)
            award = repo.award(order_id) or award  # re-read under the lock
            if award.reversal is not None:
                return Result(award, created=False)
            reversal = repo.add(account.award_reversal_entry(award))
            repo.save_balance(account)
            if reversal.shortfall:
                log.warning("award of order %s reversed with a shortfall of %d points",
                            order_id, reversal.shortfall)
            return Result(Award(award.entry, reversal), created=True)

        return self._write(work)

    # redemptions -----------------------------------------------------------------------
    def redeem(self, principal: Principal, order_id: str, points: int,
               customer_id: str | None = None) -> Result[Redemption]:
        """Spend the customer's points on their order once; refused (422) beyond the
        balance. The key is ``(customer, order id)``: see the module doc."""
        owner = self._owner(principal, customer_id, required=True)
        with business_rules():
            domain.check_points(points)

        def work(repo: LoyaltyRepository) -> Result[Redemption]:
            account = repo.lock_account(owner)
            existing = repo.redemption(owner, order_id)
            if existing is not None:
                if existing.points != points:
                    raise domain.OrderConflict(
                        f"order {order_id!r} already redeemed {existing.points} points")
                return Result(existing, created=False)
            entry = repo.add(account.redemption_entry(order_id, points))
            repo.save_balance(account)
            return Result(Redemption(entry), created=True)

        return self._write(work)

    def reverse_redemption(self, principal: Principal, order_id: str,
                           customer_id: str | None = None) -> Result[Redemption]:
        """Give a redemption's points back, once (staff and services only)."""
        principal.require_privileged()

        def work(repo: LoyaltyRepository) -> Result[Redemption]:
            found = self._find_redemption(repo, principal, order_id, customer_id)
            account = repo.lock_account(found.entry.customer_id)
            redemption = repo.redemption(found.entry.customer_id, order_id) or found
            if redemption.reversal is not None:
                return Result(redemption, created=False)
            reversal = repo.add(account.redemption_reversal_entry(redemption))
            repo.save_balance(account)
            return Result(Redemption(redemption.entry, reversal), created=True)

        return self._write(work)
