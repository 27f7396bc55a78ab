"""Catalog domain: categories, products, prices, stock levels and reservations. Pure Python.

No framework or database imports here: the service layer loads these objects through the
repository (``store.py``), asks them to change, and stores the result; ``api.py`` turns
them into JSON. Every rule that protects the stock lives here:

* ``available = on_hand - reserved`` and never below zero;
* a reservation holds all of its items or none (:func:`reserve_all`);
* a reservation moves ``held → committed`` or ``held → released``, and a committed one
  ``committed → returned`` (the goods come back: :meth:`StockLevel.take_back`); never
  back and never across; repeating the transition it already made changes nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

_CURRENCY = re.compile(r"^[A-Z]{3}$")

MAX_ON_HAND = 1_000_000_000  # units of one product; keeps every counter in 32 bits


class DomainError(Exception):
    """A business rule refused the change."""


class InvalidQuantity(DomainError):
    """A quantity is not a positive whole number, or an item is listed twice."""


class InvalidPrice(DomainError):
    """A price is negative or its currency is not an ISO 4217 code."""


class InsufficientStock(DomainError):
    """At least one product cannot cover the requested quantity."""

    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        names = ", ".join(
            f"product {s.product_id} (requested {s.requested}, available {s.available})"
            for s in shortages
        )
        super().__init__(f"insufficient stock for {names}")


class StockBelowReserved(DomainError):
    """on_hand would drop below what is already reserved (or below zero)."""


class InvalidTransition(DomainError):
    """The reservation is not in a state that allows this change."""


@dataclass(frozen=True)
class Price:
    """An amount in minor units (cents) of an ISO 4217 currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise InvalidPrice("price must not be negative")
        if not _CURRENCY.match(self.currency):
            raise InvalidPrice(f"{self.currency!r} is not an ISO 4217 currency code")


@dataclass
class Category:
    """A group of products, addressed by a unique slug."""

    id: int
    slug: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime

    def change(self, *, slug: str | None = None, name: str | None = None,
               description: str | None = None) -> None:
        """Apply the given fields (``None`` keeps a field as it is)."""
        if slug is not None:
            self.slug = slug
        if name is not None:
            self.name = name
        if description is not None:
            self.description = description


@dataclass
class Product:
    """Something for sale: a unique SKU, a price, a category; ``active`` when for sale."""

    id: int
    sku: str
    name: str
    description: str
    category_id: int
    price: Price
    active: bool
    created_at: datetime
    updated_at: datetime

    def change(
        self,
        *,
        sku: str | None = None,
        name: str | None = None,
        description: str | None = None,
        category_id: int | None = None,
        price: int | None = None,
        currency: str | None = None,
        active: bool | None = None,
    ) -> None:
        """Apply the given fields (``None`` keeps a field); the new price is checked first."""
        new_price = Price(self.price.amount if price is None else price,
                          currency or self.price.currency)
        self.price = new_price
        if sku is not None:
            self.sku = sku
        if name is not None:
            self.name = name
        if description is not None:
            self.description = description
        if category_id is not None:
            self.category_id = category_id
        if active is not None:
            self.active = active


@dataclass(frozen=True)
class ProductFilter:
    """What a product search asks for (every criterion optional, all must hold)."""

    category: int | None = None
    q: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    active: bool | None = None


@dataclass(frozen=True)
class Shortage:
    """Why one product cannot be reserved."""

    product_id: int
    requested: int
    available: int


@dataclass(frozen=True)
class ReservationLine:
    """One product and how many units of it to hold."""

    product_id: int
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise InvalidQuantity(f"quantity of product {self.product_id} must be at least 1")


@dataclass
class StockLevel:
    """How many units of one product are in the warehouse and how many are held."""

    product_id: int
    on_hand: int = 0
    reserved: int = 0
    updated_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.on_hand < 0 or self.reserved < 0 or self.reserved > self.on_hand:
            raise StockBelowReserved(
                f"invalid stock for product {self.product_id}: "
                f"on_hand {self.on_hand}, reserved {self.reserved}"
            )

    @property
    def available(self) -> int:
        """Units that can still be reserved."""
        return self.on_hand - self.reserved

    def can_reserve(self, quantity: int) -> bool:
        return 0 < quantity <= self.available

    def reserve(self, quantity: int) -> None:
        _positive(quantity)
        if quantity > self.available:
            raise InsufficientStock([Shortage(self.product_id, quantity, self.available)])
        self.reserved += quantity

    def release(self, quantity: int) -> None:
        """Give back held units (the order will not ship)."""
        _positive(quantity)
        if quantity > self.reserved:
            raise StockBelowReserved(
                f"cannot release {quantity} of product {self.product_id}: "
                f"only {self.reserved} reserved"
            )
        self.reserved -= quantity

    def commit(self, quantity: int) -> None:
        """Held units leave the warehouse: both on_hand and reserved go down."""
        _positive(quantity)
        if quantity > self.reserved:
            raise StockBelowReserved(
                f"cannot commit {quantity} of product {self.product_id}: "
                f"only {self.reserved} reserved"
            )
        self.reserved -= quantity
        self.on_hand -= quantity

    def take_back(self, quantity: int) -> None:
        """Committed units come back to the warehouse: on_hand goes up, reserved stays."""
        _positive(quantity)
        if self.on_hand + quantity > MAX_ON_HAND:
            raise InvalidQuantity(f"on_hand must not exceed {MAX_ON_HAND}")
        self.on_hand += quantity

    def set_on_hand(self, on_hand: int) -> None:
        """A stock take: the counted quantity replaces on_hand."""
        if on_hand < 0:
            raise StockBelowReserved("on_hand must not be negative")
        if on_hand > MAX_ON_HAND:
            raise InvalidQuantity(f"on_hand must not exceed {MAX_ON_HAND}")
        if on_hand < self.reserved:
            raise StockBelowReserved(
                f"on_hand {on_hand} of product {self.product_id} would be below "
                f"the {self.reserved} reserved units"
            )
        self.on_hand = on_hand

    def adjust(self, delta: int) -> None:
        """A goods receipt (delta > 0) or a write-off (delta < 0)."""
        if delta == 0:
            raise InvalidQuantity("delta must not be 0")
        self.set_on_hand(self.on_hand + delta)


class ReservationStatus(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    RETURNED = "returned"


@dataclass
class Reservation:
    """Stock held for one order."""

    order_id: str
    lines: list[ReservationLine]
    status: ReservationStatus = ReservationStatus.HELD
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    def commit(self) -> bool:
        """held → committed; True if it changed, False if it was already committed."""
        return self._move(ReservationStatus.COMMITTED)

    def release(self) -> bool:
        """held → released; True if it changed, False if it was already released."""
        return self._move(ReservationStatus.RELEASED)

    def return_stock(self) -> bool:
        """committed → returned; True if it changed, False if it was already returned."""
        return self._move(ReservationStatus.RETURNED)

    def _move(self, target: ReservationStatus) -> bool:
        if self.status == target:
            return False
        source, verb = _MOVES[target]
        if self.status != source:
            raise InvalidTransition(
                f"cannot {verb} the reservation of order {self.order_id}: it is {self.status}"
            )
        self.status = target
        return True


_MOVES = {
    ReservationStatus.COMMITTED: (ReservationStatus.HELD, "commit"),
    ReservationStatus.RELEASED: (ReservationStatus.HELD, "release"),
    ReservationStatus.RETURNED: (ReservationStatus.COMMITTED, "return"),
}
"""target status → (the only status it can be reached from, the verb in refusals)."""


def normalise_lines(items: Iterable[tuple[int, int]]) -> list[ReservationLine]:
    """Validated lines in product-id order (the lock order); a product listed twice fails."""
    lines: dict[int, ReservationLine] = {}
    for product_id, quantity in items:
        if product_id in lines:
            raise InvalidQuantity(f"product {product_id} is listed more than once")
        lines[product_id] = ReservationLine(product_id, quantity)
    if not lines:
        raise InvalidQuantity("a reservation needs at least one item")
    return [lines[pid] for pid in sorted(lines)]


def shortages(levels: Mapping[int, StockLevel], lines: Iterable[ReservationLine]) -> list[Shortage]:
    """Every line the stock cannot cover (a missing level counts as 0 available)."""
    found = []
    for line in lines:
        level = levels.get(line.product_id)
        available = level.available if level else 0
        if line.quantity > available:
            found.append(Shortage(line.product_id, line.quantity, available))
    return found


def reserve_all(levels: Mapping[int, StockLevel], lines: list[ReservationLine]) -> None:
    """Hold every line or none: check them all first, then change them all."""
    short = shortages(levels, lines)
    if short:
        raise InsufficientStock(short)
    for line in lines:
        levels[line.product_id].reserve(line.quantity)


def release_all(levels: Mapping[int, StockLevel], lines: Iterable[ReservationLine]) -> None:
    for line in lines:
        levels[line.product_id].release(line.quantity)


def commit_all(levels: Mapping[int, StockLevel], lines: Iterable[ReservationLine]) -> None:
    for line in lines:
        levels[line.product_id].commit(line.quantity)


def return_all(levels: Mapping[int, StockLevel], lines: Iterable[ReservationLine]) -> None:
    """Put every committed line back on hand."""
    for line in lines:
        levels[line.product_id].take_back(line.quantity)


def _positive(quantity: int) -> None:
    if quantity < 1:
        raise InvalidQuantity("quantity must be at least 1")
