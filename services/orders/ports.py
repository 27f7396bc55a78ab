"""What the orders service needs from outside: its store and the other services, as
ports (protocols) and answers.

The use cases only know these protocols. :class:`OrderRepository` (with its
:class:`charter.idempotency.IdempotencyKeys`) is reached through a
:class:`charter.unit_of_work.UnitOfWork`; its SQLAlchemy implementation is
:class:`services.orders.store.SqlOrderRepository`, which raises
:class:`charter.unit_of_work.WriteConflict` for a write a concurrent transaction made
first (an idempotency key). The
HTTP adapters are in :mod:`.clients` (and, for the catalog, the shared
:mod:`services.catalog_client`); in-memory fakes for tests live in
``tests/orders/orders_fakes.py``.

"Not found" and business refusals are answers (return values). Anything that prevents an
answer — the service is down, slow, answers 5xx or garbage, refuses our token, or no
token can be had — raises a :class:`DependencyUnavailable` (503).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from charter.idempotency import IdempotencyKeys
from charter.problems import Forbidden, UpstreamUnavailable
from services.catalog_client.models import (
    CatalogUnavailable,
    Product,
    ReserveOutcome,
    ReserveResult,
    TransitionOutcome,
    TransitionResult,
)

from .domain import Order, OrderEvent

__all__ = [
    "CartForbidden", "CartLine", "CartPort", "CartSnapshot", "CartUnavailable",
    "CatalogPort", "CatalogUnavailable", "CheckoutPaymentsPort", "Conversion",
    "ConversionOutcome", "DependencyUnavailable", "ExchangePort", "ExchangeUnavailable",
    "OrderFilter", "OrderRepository", "Payment", "PaymentOutcome", "PaymentsPort",
    "PaymentsUnavailable", "Product", "ReserveOutcome", "ReserveResult",
    "TransitionOutcome", "TransitionResult",
]

DependencyUnavailable = UpstreamUnavailable
"""Another service could not answer (the base of every ``…Unavailable`` below)."""


class CartUnavailable(DependencyUnavailable):
    """The cart could not answer."""


class PaymentsUnavailable(DependencyUnavailable):
    """The payments service could not answer."""


class ExchangeUnavailable(DependencyUnavailable):
    """The exchange service could not answer."""


class CartForbidden(Forbidden):
    """The cart refused the caller's own token (e.g. it lacks ``cart:read``)."""


# -- answers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CartLine:
    """One line of the caller's cart."""

    product_id: int
    sku: str
    name: str
    unit_price: int
    currency: str
    quantity: int
    availability: str = "in_stock"


@dataclass(frozen=True)
class CartSnapshot:
    """The caller's cart as the cart service showed it."""

    user_id: str
    items: list[CartLine]
    currency: str | None
    pricing: str = "current"  # "stale" when the cart could not refresh its prices


@dataclass(frozen=True)
class Payment:
    """A payment as the payments service shows it."""

    id: str
    order_id: str
    customer_id: str
    amount: int
    currency: str
    status: str


# -- ports ------------------------------------------------------------------------------
class CatalogPort(Protocol):
    """Products and stock reservations (the shared catalog client implements it)."""

    def get_product(self, product_id: int) -> Product | None:
        """The product, ``None`` if the catalog does not know it."""
        ...

    def reserve(self, order_id: str, items: Sequence[tuple[int, int]], key: str) -> ReserveResult:
        """Hold every item for the order, or none."""
        ...

    def commit(self, order_id: str, key: str) -> TransitionResult:
        """Commit the order's reservation."""
        ...

    def release(self, order_id: str, key: str) -> TransitionResult:
        """Release the order's reservation."""
        ...

    def return_stock(self, order_id: str, key: str) -> TransitionResult:
        """Put a committed reservation's quantities back on hand (a refund, or a checkout
        whose payment could not be captured after its stock was committed)."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""


class CartPort(Protocol):
    """The caller's own cart, read and emptied with the caller's own token."""

    def get_cart(self, authorization: str, user_id: str) -> CartSnapshot:
        """The cart of the user whose ``Authorization`` header is forwarded."""
        ...

    def clear_cart(self, authorization: str, user_id: str) -> None:
        """Empty that cart."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""


class PaymentsPort(Protocol):
    """Payments, read to check an order's payment before confirming it."""

    def get_payment(self, payment_id: str) -> Payment | None:
        """The payment, ``None`` if it does not exist."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""


@dataclass(frozen=True)
class PaymentOutcome:
    """How a payment step of the checkout ended: the payment (when there is one), or
    ``refused`` with the other service's reason (declined, not capturable…)."""

    payment: Payment | None
    refused: str | None = None


@runtime_checkable
class CheckoutPaymentsPort(Protocol):
    """Payments moved by the v2 checkout (each call keyed by the order id: never twice)."""

    def authorize(self, order_id: str, customer_id: str, amount: int, currency: str,
                  method: str, key: str) -> PaymentOutcome:
        """Authorise ``amount`` with the provider token ``method`` for the customer."""
        ...

    def capture(self, payment_id: str, key: str) -> PaymentOutcome:
        """Capture the whole authorised amount."""
        ...

    def void(self, payment_id: str, key: str) -> PaymentOutcome:
        """Release an authorisation that was not captured."""
        ...

    def refund(self, payment_id: str, key: str, reason: str) -> PaymentOutcome:
        """Refund everything still refundable of a captured payment."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""


@dataclass(frozen=True)
class Conversion:
    """An amount converted by the exchange service (``stale``: its last known rate)."""

    amount: int
    currency: str
    rate: str
    stale: bool = False


@dataclass(frozen=True)
class ConversionOutcome:
    """The conversion, or ``refused`` with why (no rate at all, unknown currency)."""

    conversion: Conversion | None
    refused: str | None = None


class ExchangePort(Protocol):
    """Currency conversion for the checkout (orders settle in EUR)."""

    def convert(self, amount: int, source: str, target: str) -> ConversionOutcome:
        """``amount`` minor units of ``source`` in ``target``; refused when there is no
        rate (not even a last known one); :class:`ExchangeUnavailable` when unreachable."""
        ...

    def close(self) -> None:
        """Release resources (connections)."""


# -- the store --------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderFilter:
    """Which orders a page lists (``None``: any)."""

    customer_id: str | None = None
    status: str | None = None
    v2_status: bool = False  # ``status`` is a v2 status (pending/confirmed/cancelled)

    def statuses(self) -> list[str]:
        """The stored statuses ``status`` stands for."""
        if self.status is None:
            return []
        if not self.v2_status:
            return [self.status]
        return list(V2_STATUSES.get(self.status, (self.status,)))


V2_STATUSES: dict[str, tuple[str, ...]] = {
    "pending": ("pending", "reserved"),
    "confirmed": ("confirmed",),
    "cancelled": ("cancelled", "rejected"),
}
"""The stored (v1) statuses behind each v2 status."""


class OrderRepository(Protocol):
    """Orders (and the service's idempotency keys), inside one unit of work."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The idempotency keys of the same transaction (place, cancel, confirm)."""
        ...

    def add(self, order: Order) -> None:
        """Store a new order with its lines."""
        ...

    def save(self, order: Order) -> None:
        """Store the order's state (its lines never change after placement)."""
        ...

    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        """The order, ``None`` if it does not exist.

        ``lock=True`` (in a write unit of work) holds the order until the unit of work
        ends, so two changes to one order are serialised and each sees the current state.
        """
        ...

    def page(self, flt: OrderFilter, offset: int, limit: int) -> tuple[list[Order], int]:
        """One page of orders, newest first, and how many match in all."""
        ...

    def page_after(self, flt: OrderFilter, cursor: tuple[datetime, str] | None,
                   limit: int) -> list[Order]:
        """Up to ``limit`` orders, newest first, after ``cursor`` (``created_at``, id)."""
        ...

    def events(self, order_id: str, after: int, limit: int) -> list[OrderEvent]:
        """The order's audit trail: events with ``sequence > after``, oldest first."""
        ...

    def payment_method(self, order_id: str) -> str | None:
        """The payment token a v2 checkout pays with (``None`` for v1 orders)."""
        ...

    def needing_recovery(self, before: datetime, limit: int) -> list[str]:
        """Ids of orders with unfinished work, last changed at or before ``before``."""
        ...
