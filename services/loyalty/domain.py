"""Loyalty domain: the points rule and the ledger's invariants. Pure Python.

A customer's points live in an append-only ledger. Every entry changes the balance by
its signed ``points`` and records ``balance_after``; the balance never drops below zero.
Four kinds of entry exist, each at most once per order (the order id is the natural
idempotency key of every points operation; see "Whose order id" below):

* ``award`` (+points) — an order earned points: either explicit points, or computed from
  the order's amount by :func:`points_for` (``points_per_unit`` points per whole unit of
  the order's currency, rounded down);
* ``redemption`` (−points) — the customer spent points on an order; refused when the
  balance does not cover it;
* ``award_reversal`` (−points) — the order was cancelled: its award is taken back. Points
  already spent cannot be taken back, so the reversal takes ``min(award, balance)`` and
  records the rest as ``shortfall`` (a compensation must always succeed);
* ``redemption_reversal`` (+points) — the order that spent points failed or was
  cancelled: the points are given back in full.

Whose order id: awards are made by the orders service (which owns orders), so an order's
award is unique platform-wide. A redemption's ``order_id`` is the *customer's* reference
for what they spent points on: loyalty does not own orders and cannot tell whether an
order id belongs to someone, so a redemption is tied to its customer and its key is
``(customer_id, order_id)``. One customer's order ids are therefore invisible to another:
redeeming on an id another customer already used is answered exactly like a fresh id,
and only ever touches the caller's own balance.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime

_CURRENCY = re.compile(r"^[A-Z]{3}$")

MAX_POINTS = 1_000_000_000  # per entry; balances are 64-bit in the database
DEFAULT_POINTS_PER_UNIT = 1

# ISO 4217 minor-unit exponents that are not 2 (every other code has cents).
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
         "VND", "VUV", "XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}


class DomainError(Exception):
    """A business rule refused the change."""


class InvalidAmount(DomainError):
    """An amount, currency or number of points is not acceptable."""


class InsufficientPoints(DomainError):
    """The balance does not cover a redemption."""

    def __init__(self, balance: int, requested: int) -> None:
        self.balance = balance
        self.requested = requested
        super().__init__(f"the balance is {balance} points, {requested} requested")


class OrderConflict(DomainError):
    """The order already has an entry of this kind made from a different request."""


class EntryType(enum.StrEnum):
    AWARD = "award"
    REDEMPTION = "redemption"
    AWARD_REVERSAL = "award_reversal"
    REDEMPTION_REVERSAL = "redemption_reversal"


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point of an ISO 4217 currency (2 unless listed)."""
    if not _CURRENCY.match(currency):
        raise InvalidAmount(f"{currency!r} is not an ISO 4217 currency code")
    return _EXPONENTS.get(currency, 2)


def points_for(amount: int, currency: str, points_per_unit: int = DEFAULT_POINTS_PER_UNIT) -> int:
    """Points earned by an order of ``amount`` minor units: per whole unit, rounded down."""
    if amount < 0:
        raise InvalidAmount("amount must not be negative")
    if points_per_unit < 0:
        raise InvalidAmount("points per unit must not be negative")
    whole_units = amount // 10 ** minor_unit_exponent(currency)
    points = whole_units * points_per_unit
    if points > MAX_POINTS:
        raise InvalidAmount(f"an award is limited to {MAX_POINTS} points")
    return points


def check_points(points: int, *, allow_zero: bool = False) -> None:
    """Points of one entry: a whole number in ``[1, MAX_POINTS]`` (0 allowed for awards)."""
    low = 0 if allow_zero else 1
    if not low <= points <= MAX_POINTS:
        raise InvalidAmount(f"points must be between {low} and {MAX_POINTS}")


@dataclass(frozen=True)
class AwardRequest:
    """What the caller asked for: explicit points, or an order amount to convert."""

    customer_id: str
    order_id: str
    amount: int | None = None
    currency: str | None = None
    points: int | None = None

    def __post_init__(self) -> None:
        if (self.points is None) == (self.amount is None):
            raise InvalidAmount("give either points, or amount and currency — not both")
        if self.amount is not None and self.currency is None:
            raise InvalidAmount("an amount needs its currency")
        if self.points is not None and self.currency is not None:
            raise InvalidAmount("currency only goes with an amount")
        if self.currency is not None:
            minor_unit_exponent(self.currency)
        if self.points is not None:
            check_points(self.points)

    def earned(self, points_per_unit: int) -> int:
        """The points this request is worth under the given rule."""
        if self.points is not None:
            return self.points
        assert self.amount is not None and self.currency is not None
        return points_for(self.amount, self.currency, points_per_unit)

    def same_as(self, customer_id: str, amount: int | None, currency: str | None,
                points: int) -> bool:
        """Is a stored award (its inputs) the answer to this request?

        An award made from an amount is matched on customer, amount and currency (so a
        retry gets the first answer even if the rule changed in between); one made from
        explicit points on customer and points.
        """
        if customer_id != self.customer_id:
            return False
        if self.amount is not None:
            return (amount, currency) == (self.amount, self.currency)
        return amount is None and points == self.points


@dataclass(frozen=True)
class Entry:
    """One ledger entry; ``points`` is the signed change of the balance.

    ``id`` and ``created_at`` are given by the store when the entry is recorded.
    """

    customer_id: str
    type: EntryType
    points: int
    order_id: str
    balance_after: int
    amount: int | None = None
    currency: str | None = None
    shortfall: int = 0
    id: int | None = None
    created_at: datetime | None = None

    def recorded(self, id: int, created_at: datetime) -> Entry:
        """This entry as the store recorded it."""
        return replace(self, id=id, created_at=created_at)


@dataclass(frozen=True)
class Award:
    """An order's award and, once the order was cancelled, its reversal."""

    entry: Entry
    reversal: Entry | None = None

    @property
    def status(self) -> str:
        return "reversed" if self.reversal is not None else "awarded"

    def answers(self, request: AwardRequest) -> bool:
        """Is this award the answer to ``request`` (a retry), rather than a conflict?"""
        e = self.entry
        return request.same_as(e.customer_id, e.amount, e.currency, e.points)


@dataclass(frozen=True)
class Redemption:
    """Points a customer spent on one of their orders and, once given back, the refund."""

    entry: Entry
    reversal: Entry | None = None

    @property
    def status(self) -> str:
        return "reversed" if self.reversal is not None else "redeemed"

    @property
    def points(self) -> int:
        """Points debited (positive)."""
        return -self.entry.points


@dataclass
class Account:
    """A customer's balance; every change goes through :meth:`apply`."""

    customer_id: str
    balance: int = 0
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.balance < 0:
            raise DomainError(f"balance of {self.customer_id} is negative ({self.balance})")

    def award(self, points: int) -> int:
        check_points(points, allow_zero=True)
        return self._apply(points)

    def redeem(self, points: int) -> int:
        check_points(points)
        if points > self.balance:
            raise InsufficientPoints(self.balance, points)
        return self._apply(-points)

    def revoke_award(self, awarded: int) -> tuple[int, int]:
        """Take back an award: ``(points taken, shortfall)`` — never below zero."""
        taken = min(awarded, self.balance)
        self._apply(-taken)
        return taken, awarded - taken

    def refund_redemption(self, redeemed: int) -> int:
        return self._apply(redeemed)

    def _apply(self, delta: int) -> int:
        new = self.balance + delta
        if new < 0:  # pragma: no cover - guarded by the callers above
            raise InsufficientPoints(self.balance, -delta)
        self.balance = new
        return new

    # the entries each operation records -------------------------------------------------
    def award_entry(self, request: AwardRequest, points_per_unit: int) -> Entry:
        """Credit ``request``'s points; the ``award`` entry to record."""
        points = request.earned(points_per_unit)
        after = self.award(points)
        return Entry(self.customer_id, EntryType.AWARD, points, request.order_id, after,
                     amount=request.amount, currency=request.currency)

    def redemption_entry(self, order_id: str, points: int) -> Entry:
        """Debit ``points`` for ``order_id`` (:class:`InsufficientPoints` beyond the balance)."""
        after = self.redeem(points)
        return Entry(self.customer_id, EntryType.REDEMPTION, -points, order_id, after)

    def award_reversal_entry(self, award: Award) -> Entry:
        """Take ``award`` back as far as the balance allows (the rest is the shortfall)."""
        taken, shortfall = self.revoke_award(award.entry.points)
        return Entry(self.customer_id, EntryType.AWARD_REVERSAL, -taken,
                     award.entry.order_id, self.balance, shortfall=shortfall)

    def redemption_reversal_entry(self, redemption: Redemption) -> Entry:
        """Give ``redemption``'s points back in full."""
        after = self.refund_redemption(redemption.points)
        return Entry(self.customer_id, EntryType.REDEMPTION_REVERSAL, redemption.points,
                     redemption.entry.order_id, after)
