"""The order aggregate: lines, totals and the state machine. Pure Python, no I/O.

An order is created ``pending`` with its priced lines, before any other service is asked
for anything. Then::

    pending ──reserve──▶ reserved ──confirm──▶ confirmed
       │                    │
       ├──reject──▶ rejected│
       └──cancel──▶ cancelled ◀──cancel──┘

* ``pending``: the stock reservation was requested (or is about to be) and its answer is
  not known yet; recovery asks again with the same idempotency key.
* ``reserved``: the catalog holds the stock. A confirmation in progress records the
  ``payment_id`` first; from then on the order can no longer be cancelled (the stock may
  already be committed) and recovery finishes the confirmation.
* ``rejected``: the catalog refused the reservation (short or unsellable products); it
  never held stock. Final.
* ``confirmed``: paid, the reservation committed (the goods leave the warehouse). The
  follow-ups (loyalty points, confirmation message) are tracked separately and never
  undo the confirmation. Cancelling is refused: the catalog cannot take committed stock
  back yet and the payment would need a refund (both come with the checkout saga).
* ``cancelled``: final; ``release_status`` tracks giving the held stock back.

Amounts are integers in minor units; a line total is ``unit_price * quantity``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

MAX_QUANTITY = 999
MAX_LINES = 100
DEFAULT_CURRENCY = "EUR"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class OrderError(Exception):
    """A business rule refused the request."""


class InvalidOrder(OrderError):
    """The order cannot be built as asked (answered 422)."""


class InvalidTransition(OrderError):
    """The order's state does not allow the change (answered 409)."""


class OrderStatus(StrEnum):
    PENDING = "pending"
    RESERVED = "reserved"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class FollowUp(StrEnum):
    """State of a follow-up action (loyalty award, notification, stock release)."""

    PENDING = "pending"  # about to be attempted (or interrupted: recovery retries it)
    DONE = "done"
    PENDING_RETRY = "pending_retry"  # the other service failed; recovery retries it
    FAILED = "failed"  # the other service refused it for good (logged)


class Source(StrEnum):
    CART = "cart"
    ITEMS = "items"


class RejectionCode(StrEnum):
    """Why an order ended without being confirmed (v2 shows it as ``reason.code``)."""

    INSUFFICIENT_STOCK = "insufficient_stock"
    PRODUCT_UNAVAILABLE = "product_unavailable"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED_BY_CUSTOMER = "cancelled_by_customer"
    CANCELLED_BY_STAFF = "cancelled_by_staff"


@dataclass(frozen=True)
class OrderEvent:
    """One entry of an order's audit trail (``sequence`` is given when stored)."""

    type: str
    occurred_at: datetime
    data: dict[str, Any]
    sequence: int = 0


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.RESERVED, OrderStatus.REJECTED, OrderStatus.CANCELLED}
    ),
    OrderStatus.RESERVED: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def check_quantity(quantity: int) -> int:
    """``quantity`` if it is a whole number in 1..MAX_QUANTITY, else :class:`InvalidOrder`."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidOrder("quantity must be an integer")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidOrder(f"quantity must be between 1 and {MAX_QUANTITY}, got {quantity}")
    return quantity


def check_currency(currency: str) -> str:
    if not _CURRENCY.match(currency or ""):
        raise InvalidOrder(f"{currency!r} is not an ISO 4217 currency code")
    return currency


def merge_quantities(items: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """One ``(product_id, quantity)`` per product, in first-seen order (duplicates summed)."""
    merged: dict[int, int] = {}
    for product_id, quantity in items:
        merged[product_id] = merged.get(product_id, 0) + check_quantity(quantity)
    for product_id, quantity in merged.items():
        if quantity > MAX_QUANTITY:
            raise InvalidOrder(
                f"product {product_id}: at most {MAX_QUANTITY} units per order, got {quantity}"
            )
    if not merged:
        raise InvalidOrder("an order needs at least one item")
    if len(merged) > MAX_LINES:
        raise InvalidOrder(f"an order holds at most {MAX_LINES} different products")
    return list(merged.items())


@dataclass(frozen=True)
class OrderLine:
    """One product of an order, priced when the order was placed."""

    product_id: int
    sku: str
    name: str
    unit_price: int
    currency: str
    quantity: int

    def __post_init__(self) -> None:
        check_quantity(self.quantity)
        if isinstance(self.unit_price, bool) or self.unit_price < 0:
            raise InvalidOrder(f"product {self.product_id} has a negative price")

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


def build_lines(lines: Sequence[OrderLine], currency: str) -> list[OrderLine]:
    """Validated lines: all in ``currency``, one per product, within the limits."""
    check_currency(currency)
    if not lines:
        raise InvalidOrder("an order needs at least one item")
    if len(lines) > MAX_LINES:
        raise InvalidOrder(f"an order holds at most {MAX_LINES} different products")
    seen: set[int] = set()
    for line in lines:
        if line.product_id in seen:
            raise InvalidOrder(f"product {line.product_id} is listed more than once")
        seen.add(line.product_id)
        if line.currency != currency:
            raise InvalidOrder(
                f"product {line.product_id} is priced in {line.currency}, the order is in "
                f"{currency} (currency conversion comes with the checkout saga)"
            )
    return list(lines)


@dataclass
class Order:
    """The aggregate. Change it only through its methods; they enforce :data:`TRANSITIONS`."""

    id: str
    customer_id: str
    lines: list[OrderLine]
    currency: str
    created_at: datetime
    updated_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    source: Source = Source.ITEMS
    customer_email: str | None = None
    reason: str | None = None
    rejection_code: RejectionCode | None = None
    shortages: list[dict[str, Any]] | None = None
    payment_id: str | None = None
    loyalty_status: FollowUp | None = None
    notification_status: FollowUp | None = None
    release_status: FollowUp | None = None
    payment_status: str | None = None  # the payment as payments last reported it (v2)
    loyalty_reversal_status: FollowUp | None = None  # taking the points back (v2 refund)
    new_events: list[OrderEvent] = field(default_factory=list, compare=False, repr=False)

    def _event(self, kind: str, now: datetime, **data: Any) -> None:
        self.new_events.append(OrderEvent(kind, now, data))

    @classmethod
    def place(
        cls,
        order_id: str,
        customer_id: str,
        lines: Sequence[OrderLine],
        currency: str,
        now: datetime,
        *,
        source: Source = Source.ITEMS,
        customer_email: str | None = None,
    ) -> Order:
        """A new ``pending`` order (the lines are validated)."""
        order = cls(
            id=order_id,
            customer_id=customer_id,
            lines=build_lines(lines, currency),
            currency=currency,
            created_at=now,
            updated_at=now,
            source=source,
            customer_email=customer_email,
        )
        order._event("order.placed", now, status="pending", item_count=order.item_count,
                     amount={"amount_minor": order.total, "currency": currency})
        return order

    # -- derived -------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return sum(line.line_total for line in self.lines)

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def confirming(self) -> bool:
        """A confirmation with ``payment_id`` started and has not finished."""
        return self.status is OrderStatus.RESERVED and self.payment_id is not None

    @property
    def is_final(self) -> bool:
        return not TRANSITIONS[self.status]

    def reservation_items(self) -> list[tuple[int, int]]:
        return [(line.product_id, line.quantity) for line in self.lines]

    # -- transitions ---------------------------------------------------------------------
    def _move(self, target: OrderStatus, now: datetime) -> None:
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"a {self.status} order cannot become {target}")
        self.status = target
        self.updated_at = now

    def mark_reserved(self, now: datetime) -> None:
        """The catalog holds the stock."""
        self._move(OrderStatus.RESERVED, now)
        self._event("stock.reserved", now)

    def reject(
        self,
        code: RejectionCode,
        reason: str,
        now: datetime,
        shortages: list[dict[str, Any]] | None = None,
    ) -> None:
        """The catalog refused the reservation."""
        self._move(OrderStatus.REJECTED, now)
        self.rejection_code = code
        self.reason = reason
        self.shortages = shortages
        self._event("order.rejected", now, status="cancelled", code=code.value,
                    detail=reason[:500])

    def start_confirmation(self, payment_id: str, now: datetime) -> None:
        """Record the payment before the reservation is committed (blocks cancelling)."""
        if self.status is not OrderStatus.RESERVED:
            raise InvalidTransition(f"only a reserved order can be confirmed (it is {self.status})")
        if self.payment_id not in (None, payment_id):
            raise InvalidTransition(
                f"order {self.id} is already being confirmed with payment {self.payment_id}"
            )
        if self.payment_id is None:
            self._event("order.confirming", now, payment_id=payment_id)
        self.payment_id = payment_id
        self.updated_at = now

    def abandon_confirmation(self, now: datetime) -> None:
        """The confirmation could not go through: forget the payment, stay reserved."""
        if self.confirming:
            self._event("order.confirmation_abandoned", now, payment_id=self.payment_id)
            self.payment_id = None
            self.updated_at = now

    def confirm(self, now: datetime) -> None:
        """The reservation is committed: confirmed; the follow-ups are due."""
        if self.payment_id is None:
            raise InvalidTransition("a confirmation needs a payment")
        self._move(OrderStatus.CONFIRMED, now)
        self.loyalty_status = FollowUp.PENDING
        self.notification_status = FollowUp.PENDING
        self._event("order.confirmed", now, status="confirmed", payment_id=self.payment_id)

    def can_cancel(self) -> tuple[bool, str]:
        """Whether :meth:`cancel` would succeed (or be a no-op), and why not."""
        if self.status is OrderStatus.CANCELLED:
            return True, "already cancelled"
        if self.status is OrderStatus.REJECTED:
            return False, "a rejected order holds nothing to cancel"
        if self.status is OrderStatus.CONFIRMED:
            return False, (
                "a confirmed order cannot be cancelled yet: its stock is committed and its "
                "payment taken (refunds come with the checkout saga)"
            )
        if self.confirming:
            return False, (
                f"order {self.id} is being confirmed with payment {self.payment_id}; "
                "retry the confirmation"
            )
        return True, ""

    def cancel(self, now: datetime) -> bool:
        """Cancel; True if the state changed (False: it already was cancelled).

        The stock the order may hold is to be released: ``release_status`` becomes
        ``pending`` until the catalog confirmed it.
        """
        allowed, why = self.can_cancel()
        if not allowed:
            raise InvalidTransition(why)
        if self.status is OrderStatus.CANCELLED:
            return False
        self._move(OrderStatus.CANCELLED, now)
        self.release_status = FollowUp.PENDING
        self._event("order.cancelled", now, status="cancelled")
        return True

    def cancel_for(self, code: RejectionCode, detail: str, now: datetime) -> bool:
        """Cancel (as :meth:`cancel`) and say why (``code``, ``detail``)."""
        changed = self.cancel(now)
        if changed:
            self.rejection_code, self.reason = code, detail
            self.new_events[-1].data.update(code=code.value, detail=detail[:500])
        return changed

    def record_payment(self, payment_id: str, status: str, now: datetime) -> None:
        """What the payments service answered about the order's payment (v2 checkout)."""
        if (payment_id, status) == (self.payment_id, self.payment_status):
            return
        self.payment_status = status
        self.updated_at = now
        self._event(f"payment.{status}", now, payment_id=payment_id,
                    amount={"amount_minor": self.total, "currency": self.currency})

    def cancel_refunded(self, code: RejectionCode, detail: str, now: datetime) -> None:
        """A confirmed order whose payment was refunded becomes ``cancelled``.

        Its stock was committed (the goods left): nothing is released, so
        ``release_status`` stays null. Its loyalty points are to be taken back
        (``loyalty_reversal_status`` pending) unless loyalty refused the award for good.
        """
        if self.status is not OrderStatus.CONFIRMED:
            raise InvalidTransition(f"only a confirmed order is refunded (it is {self.status})")
        self.status = OrderStatus.CANCELLED
        self.updated_at = now
        if self.loyalty_status not in (None, FollowUp.FAILED):
            # Also when the award is still open: an award whose answer was lost may exist.
            self.loyalty_reversal_status = FollowUp.PENDING
        self.rejection_code, self.reason = code, detail
        self._event("order.cancelled", now, status="cancelled", code=code.value,
                    detail=detail[:500])

    def record(self, what: str, outcome: FollowUp, now: datetime) -> None:
        """Set the state of a follow-up: ``loyalty``, ``notification`` or ``release``."""
        if what not in ("loyalty", "notification", "release"):
            raise ValueError(what)
        setattr(self, f"{what}_status", outcome)
        self.updated_at = now
        self._event(f"{what}.{outcome.value}", now, outcome=outcome.value)

    def award_recorded_after_cancel(self, now: datetime) -> None:
        """An award that landed after a refunded cancel: its points must be taken back
        too (reopens the reversal; loyalty replays a reversal already made)."""
        if self.status is OrderStatus.CANCELLED and \
                self.loyalty_reversal_status not in (FollowUp.PENDING, FollowUp.PENDING_RETRY):
            self.loyalty_reversal_status = FollowUp.PENDING
            self.updated_at = now

    def record_reversal(self, outcome: FollowUp, now: datetime, *,
                        awarded: bool = True) -> None:
        """Set the state of taking the loyalty points back; ``awarded=False``: loyalty
        held no award, nothing was taken (``loyalty.not_awarded``)."""
        self.loyalty_reversal_status = outcome
        self.updated_at = now
        kind = {FollowUp.DONE: "reversed" if awarded else "not_awarded"}.get(
            outcome, f"reversal_{outcome.value}")
        self._event(f"loyalty.{kind}", now, outcome=outcome.value)

    def copy(self) -> Order:
        return replace(self, lines=list(self.lines), new_events=list(self.new_events))


def idempotency_key(order_id: str, step: str) -> str:
    """The key of one step toward another service: ``order-<id>-<step>``.

    Derived from the order id, so every retry of a step (by the request, a replay, or
    recovery) is the same request to the other service and cannot act twice.
    """
    return f"order-{order_id}-{step}"
