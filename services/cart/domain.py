"""The cart's rules and arithmetic: pure Python, no framework, no I/O.

A :class:`Cart` belongs to one user and holds at most one line per product. Quantities
are 1..``MAX_QUANTITY`` per line, a cart holds at most ``MAX_LINES`` lines and one
currency. Prices are integers in minor units (cents); totals never use floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

MAX_QUANTITY = 99
MAX_LINES = 50


class CartError(Exception):
    """A cart rule was broken (answered as 422 by the API)."""


class QuantityError(CartError):
    """A quantity outside 1..MAX_QUANTITY (alone, or after adding to an existing line)."""


class TooManyLines(CartError):
    """The cart already holds ``MAX_LINES`` different products."""


class CurrencyMismatch(CartError):
    """A product priced in another currency than the rest of the cart."""


class ItemNotInCart(Exception):
    """The product has no line in this cart."""


class Availability(StrEnum):
    """What the catalog says about a line (``UNKNOWN`` when it could not be asked)."""

    IN_STOCK = "in_stock"
    INSUFFICIENT_STOCK = "insufficient_stock"
    OUT_OF_STOCK = "out_of_stock"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


class Pricing(StrEnum):
    """Whether the prices of a cart were refreshed for this answer."""

    CURRENT = "current"
    STALE = "stale"


def check_quantity(quantity: int) -> int:
    """``quantity`` if it is a valid line quantity, else :class:`QuantityError`."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise QuantityError("quantity must be an integer")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise QuantityError(f"quantity must be between 1 and {MAX_QUANTITY}, got {quantity}")
    return quantity


def availability_for(active: bool, available: int | None, quantity: int) -> Availability:
    """Classify a line given the product's state and its available stock."""
    if not active:
        return Availability.UNAVAILABLE
    if available is None:
        return Availability.UNKNOWN
    if available <= 0:
        return Availability.OUT_OF_STOCK
    if available < quantity:
        return Availability.INSUFFICIENT_STOCK
    return Availability.IN_STOCK


@dataclass(frozen=True)
class CartItem:
    """One line: a product, its last known name and price, and a quantity."""

    product_id: int
    sku: str
    name: str
    unit_price: int
    currency: str
    quantity: int
    availability: Availability = Availability.UNKNOWN
    available_quantity: int | None = None

    def __post_init__(self) -> None:
        check_quantity(self.quantity)
        if self.unit_price < 0:
            raise CartError("unit price cannot be negative")

    @property
    def line_total(self) -> int:
        """Unit price times quantity, in minor units."""
        return self.unit_price * self.quantity

    def with_quantity(self, quantity: int) -> CartItem:
        """The same line with another quantity (validated)."""
        return replace(self, quantity=check_quantity(quantity))


@dataclass
class Cart:
    """A user's cart: lines in the order they were first added."""

    user_id: str
    items: list[CartItem] = field(default_factory=list)
    pricing: Pricing = Pricing.CURRENT
    updated_at: datetime | None = None

    def find(self, product_id: int) -> CartItem | None:
        """The line for ``product_id``, if any."""
        return next((i for i in self.items if i.product_id == product_id), None)

    @property
    def currency(self) -> str | None:
        """The one currency of the cart (``None`` while empty)."""
        return self.items[0].currency if self.items else None

    @property
    def item_count(self) -> int:
        """Sum of the quantities."""
        return sum(i.quantity for i in self.items)

    @property
    def total(self) -> int:
        """Sum of the line totals, in minor units."""
        return sum(i.line_total for i in self.items)

    def merged_quantity(self, product_id: int, quantity: int) -> int:
        """The quantity a line would have after adding ``quantity`` (rules checked)."""
        check_quantity(quantity)
        existing = self.find(product_id)
        if existing is None:
            if len(self.items) >= MAX_LINES:
                raise TooManyLines(f"a cart holds at most {MAX_LINES} different products")
            return quantity
        total = existing.quantity + quantity
        if total > MAX_QUANTITY:
            raise QuantityError(
                f"product {product_id} would have quantity {total}; at most {MAX_QUANTITY}"
            )
        return total

    def add(self, item: CartItem) -> CartItem:
        """Add a line, or increase the quantity of the existing one; returns the line."""
        others = [i for i in self.items if i.product_id != item.product_id]
        if others and others[0].currency != item.currency:
            raise CurrencyMismatch(
                f"the cart is in {others[0].currency}; product {item.product_id} is priced "
                f"in {item.currency}"
            )
        quantity = self.merged_quantity(item.product_id, item.quantity)
        line = replace(item, quantity=quantity)
        self._put(line)
        return line

    def set_quantity(self, product_id: int, quantity: int) -> CartItem:
        """Replace the quantity of an existing line."""
        existing = self.find(product_id)
        if existing is None:
            raise ItemNotInCart(f"product {product_id} is not in the cart")
        line = existing.with_quantity(quantity)
        self._put(line)
        return line

    def remove(self, product_id: int) -> None:
        """Remove a line; :class:`ItemNotInCart` if there is none."""
        if self.find(product_id) is None:
            raise ItemNotInCart(f"product {product_id} is not in the cart")
        self.items = [i for i in self.items if i.product_id != product_id]

    def clear(self) -> None:
        """Remove every line."""
        self.items = []

    def reprice(self, line: CartItem) -> None:
        """Replace a line's catalog data (name, price, availability), keeping its quantity."""
        existing = self.find(line.product_id)
        if existing is None:
            raise ItemNotInCart(f"product {line.product_id} is not in the cart")
        self._put(replace(line, quantity=existing.quantity))

    def _put(self, line: CartItem) -> None:
        for index, current in enumerate(self.items):
            if current.product_id == line.product_id:
                self.items[index] = line
                return
        self.items.append(line)
