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

from charter.clock import parse_rfc3339, rfc3339

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
    RATE_UNAVAILABLE = "rate_unavailable"  # no exchange rate to settle the order in EUR
    CHECKOUT_TIMEOUT = "checkout_timeout"  # a service stayed unreachable past the deadline


SETTLEMENT_CURRENCY = "EUR"
"""Payments settle in euros: an order in another currency is converted first."""


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
                f"{currency} (an order has one currency; payments settle it in EUR)"
            )
    return list(lines)


@dataclass(frozen=True)
class DomainEvent:
    """One change of an order, as stored on its stream (``type`` is ``OrderPlaced``, …).

    ``data`` holds everything replay needs and nothing personal (no e-mail, name or
    address): the customer is an id. :func:`public_event` turns it into the audit-trail
    entry the API shows.
    """

    type: str
    occurred_at: datetime
    data: dict[str, Any]


PAYMENT_EVENTS: dict[str, str] = {
    "authorized": "PaymentAuthorised",
    "declined": "PaymentDeclined",
    "captured": "PaymentCaptured",
    "voided": "PaymentVoided",
    "refunded": "PaymentRefunded",
}
"""The event type of each payment status the checkout records (others: PaymentRecorded)."""

PAYMENT_ORDER: dict[str, int] = {"requested": 1, "declined": 2, "authorized": 2,
                                 "captured": 3, "voided": 4, "refunded": 4}
"""How far along each payment status is; :meth:`Order.record_payment` never goes back."""


def _line_doc(line: OrderLine) -> dict[str, Any]:
    return {"product_id": line.product_id, "sku": line.sku, "name": line.name,
            "unit_price": line.unit_price, "currency": line.currency,
            "quantity": line.quantity}


def _enum_or_none(kind: Any, value: Any) -> Any:
    return None if value is None else kind(value)


@dataclass
class Order:
    """The aggregate, event-sourced: every change is a :class:`DomainEvent` applied to it.

    Change it only through its methods: they check :data:`TRANSITIONS` and the rules,
    then raise the event, which :meth:`_apply` folds into the state. The same fold
    rebuilds an order from its stored stream (:meth:`from_events`). ``version`` counts the
    events applied (stored and new); ``stored_version`` those that came from the store
    (the ``expected_version`` of the next append). ``customer_email`` is not in any event:
    the store keeps it apart so it can be erased, with the checkout's ``payment_method``
    (a provider token).
    """

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
    checkout: bool = False  # a v2 checkout: the saga pays and confirms it by itself
    settlement: tuple[int, str] | None = None  # (amount, currency) to pay, once converted
    stock_committed: bool = False  # the catalog committed the reservation (goods sold)
    stock_returned: FollowUp | None = None  # giving committed stock back (refund, capture failed)
    payment_method: str | None = field(default=None, compare=False, repr=False)
    version: int = field(default=0, compare=False)
    stored_version: int = field(default=0, compare=False)
    # (email, payment method) as the store last held them; None: not known to the store
    stored_contact: tuple[str | None, str | None] | None = field(
        default=None, compare=False, repr=False)
    new_events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    # -- events --------------------------------------------------------------------------
    def _raise(self, kind: str, now: datetime, **data: Any) -> None:
        """Record a new event and apply it."""
        event = DomainEvent(kind, now, data)
        self._apply(event)
        self.new_events.append(event)

    def _apply(self, event: DomainEvent) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is None:
            raise ValueError(f"unknown order event {event.type!r}")
        handler(event.data, event.occurred_at)
        self.version += 1

    @classmethod
    def from_events(cls, order_id: str, events: Iterable[DomainEvent]) -> Order:
        """Rebuild an order by replaying its stream (the first event creates it)."""
        stream = iter(events)
        first = next(stream, None)
        if first is None or first.type not in ("OrderPlaced", "OrderImported"):
            raise ValueError(f"order {order_id}: a stream must start with OrderPlaced")
        order = cls(id=order_id, customer_id="", lines=[], currency=DEFAULT_CURRENCY,
                    created_at=first.occurred_at, updated_at=first.occurred_at)
        order._apply(first)
        for event in stream:
            order._apply(event)
        order.stored_version = order.version
        return order

    def _on_OrderPlaced(self, d: dict[str, Any], at: datetime) -> None:
        self.customer_id = d["customer_id"]
        self.currency = d["currency"]
        self.source = Source(d["source"])
        self.lines = [OrderLine(**line) for line in d["lines"]]
        self.status = OrderStatus.PENDING
        self.created_at = self.updated_at = at

    def _on_OrderImported(self, d: dict[str, Any], at: datetime) -> None:
        """An order that existed before orders were event-sourced: its whole state."""
        self._on_OrderPlaced(d, at)
        self.created_at = parse_rfc3339(d["created_at"])
        self.status = OrderStatus(d["status"])
        self.reason = d.get("reason")
        self.rejection_code = _enum_or_none(RejectionCode, d.get("rejection_code"))
        self.shortages = d.get("shortages")
        self.payment_id = d.get("payment_id")
        self.payment_status = d.get("payment_status")
        for what in ("loyalty", "notification", "release", "loyalty_reversal"):
            setattr(self, f"{what}_status", _enum_or_none(FollowUp, d.get(f"{what}_status")))

    def _on_CheckoutRequested(self, d: dict[str, Any], at: datetime) -> None:
        self.checkout, self.updated_at = True, at

    def _on_CurrencyConverted(self, d: dict[str, Any], at: datetime) -> None:
        money = d["settlement"]
        self.settlement = (int(money["amount_minor"]), str(money["currency"]))
        self.updated_at = at

    def _on_StockCommitted(self, d: dict[str, Any], at: datetime) -> None:
        self.stock_committed, self.updated_at = True, at

    def _on_StockReturnRecorded(self, d: dict[str, Any], at: datetime) -> None:
        self.stock_returned, self.updated_at = FollowUp(d["outcome"]), at

    def _on_StockReserved(self, d: dict[str, Any], at: datetime) -> None:
        self.status, self.updated_at = OrderStatus.RESERVED, at

    def _on_OrderRejected(self, d: dict[str, Any], at: datetime) -> None:
        self.status, self.updated_at = OrderStatus.REJECTED, at
        self.rejection_code = RejectionCode(d["code"])
        self.reason = d["detail"]
        self.shortages = d.get("shortages")

    def _on_ConfirmationStarted(self, d: dict[str, Any], at: datetime) -> None:
        self.payment_id, self.updated_at = d["payment_id"], at

    def _on_ConfirmationAbandoned(self, d: dict[str, Any], at: datetime) -> None:
        self.payment_id, self.updated_at = None, at

    def _on_OrderConfirmed(self, d: dict[str, Any], at: datetime) -> None:
        self.status, self.updated_at = OrderStatus.CONFIRMED, at
        self.loyalty_status = FollowUp.PENDING
        self.notification_status = FollowUp.PENDING

    def _on_OrderCancelled(self, d: dict[str, Any], at: datetime) -> None:
        self.status, self.updated_at = OrderStatus.CANCELLED, at
        if d.get("code") is not None:
            self.rejection_code, self.reason = RejectionCode(d["code"]), d.get("detail")
        if d.get("refunded") and d.get("reverse_loyalty"):
            self.loyalty_reversal_status = FollowUp.PENDING
        if d.get("return_stock"):  # committed stock goes back on hand
            self.stock_returned = FollowUp.PENDING
        elif not d.get("refunded"):  # held stock is released
            self.release_status = FollowUp.PENDING

    def _on_payment(self, d: dict[str, Any], at: datetime) -> None:
        self.payment_status, self.updated_at = d["status"], at

    _on_PaymentAuthorised = _on_PaymentDeclined = _on_PaymentCaptured = _on_payment
    _on_PaymentVoided = _on_PaymentRefunded = _on_PaymentRecorded = _on_payment
    _on_PaymentRequested = _on_payment

    def _on_FollowUpRecorded(self, d: dict[str, Any], at: datetime) -> None:
        setattr(self, f"{d['what']}_status", FollowUp(d["outcome"]))
        self.updated_at = at

    _on_StockReleased = _on_FollowUpRecorded

    def _on_LoyaltyReversalReopened(self, d: dict[str, Any], at: datetime) -> None:
        self.loyalty_reversal_status, self.updated_at = FollowUp.PENDING, at

    def _on_LoyaltyReversalRecorded(self, d: dict[str, Any], at: datetime) -> None:
        self.loyalty_reversal_status, self.updated_at = FollowUp(d["outcome"]), at

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
        checked = build_lines(lines, currency)
        order = cls(id=order_id, customer_id=customer_id, lines=[], currency=currency,
                    created_at=now, updated_at=now, source=source,
                    customer_email=customer_email)
        order._raise("OrderPlaced", now, customer_id=customer_id, currency=currency,
                     source=source.value, lines=[_line_doc(line) for line in checked],
                     total=sum(line.line_total for line in checked),
                     item_count=sum(line.quantity for line in checked))
        return order

    def snapshot_event(self) -> DomainEvent:
        """The ``OrderImported`` event that recreates this order's whole state (used once,
        to move orders stored before event sourcing onto a stream)."""
        def value(x: Any) -> Any:
            return x.value if x is not None and hasattr(x, "value") else x

        return DomainEvent("OrderImported", self.updated_at, {
            "customer_id": self.customer_id, "currency": self.currency,
            "source": self.source.value, "lines": [_line_doc(ln) for ln in self.lines],
            "total": self.total, "item_count": self.item_count,
            "created_at": rfc3339(self.created_at), "status": self.status.value,
            "reason": self.reason, "rejection_code": value(self.rejection_code),
            "shortages": self.shortages, "payment_id": self.payment_id,
            "payment_status": self.payment_status,
            **{f"{w}_status": value(getattr(self, f"{w}_status"))
               for w in ("loyalty", "notification", "release", "loyalty_reversal")},
        })

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
    def _check_move(self, target: OrderStatus) -> None:
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"a {self.status} order cannot become {target}")

    def mark_reserved(self, now: datetime) -> None:
        """The catalog holds the stock."""
        self._check_move(OrderStatus.RESERVED)
        self._raise("StockReserved", now)

    def request_checkout(self, now: datetime) -> None:
        """This order is a v2 checkout: the saga authorises, captures and confirms it."""
        if not self.checkout:
            self._raise("CheckoutRequested", now, settlement_currency=SETTLEMENT_CURRENCY)

    @property
    def needs_conversion(self) -> bool:
        """Paid in another currency than the order's, and not converted yet."""
        return self.currency != SETTLEMENT_CURRENCY and self.settlement is None

    @property
    def amount_due(self) -> tuple[int, str]:
        """What the payment is for: the converted amount, else the order's total."""
        return self.settlement or (self.total, self.currency)

    def record_conversion(self, amount: int, currency: str, rate: str, stale: bool,
                          now: datetime) -> None:
        """The total converted to the settlement currency (before authorising)."""
        if self.settlement is None:
            self._raise("CurrencyConverted", now, rate=rate, stale=stale,
                        settlement={"amount_minor": amount, "currency": currency})

    def request_payment(self, now: datetime) -> None:
        """Write the intent down before asking payments to authorise (recovery then knows an
        authorisation may exist, even if its answer was lost)."""
        if self.payment_status is None:
            amount, currency = self.amount_due
            self._raise("PaymentRequested", now, status="requested",
                        amount={"amount_minor": amount, "currency": currency})

    def mark_committed(self, now: datetime) -> None:
        """The catalog committed the reservation (recorded before the capture)."""
        if not self.confirming:
            raise InvalidTransition("only an order being confirmed commits its stock")
        if not self.stock_committed:
            self._raise("StockCommitted", now)

    def record_return(self, outcome: FollowUp, now: datetime) -> None:
        """How giving the committed stock back went (refund, or a capture that failed)."""
        self._raise("StockReturnRecorded", now, outcome=outcome.value)

    def reject(
        self,
        code: RejectionCode,
        reason: str,
        now: datetime,
        shortages: list[dict[str, Any]] | None = None,
    ) -> None:
        """The catalog refused the reservation."""
        self._check_move(OrderStatus.REJECTED)
        self._raise("OrderRejected", now, code=code.value, detail=reason, shortages=shortages)

    def start_confirmation(self, payment_id: str, now: datetime) -> None:
        """Record the payment before the reservation is committed (blocks cancelling)."""
        if self.status is not OrderStatus.RESERVED:
            raise InvalidTransition(f"only a reserved order can be confirmed (it is {self.status})")
        if self.payment_id not in (None, payment_id):
            raise InvalidTransition(
                f"order {self.id} is already being confirmed with payment {self.payment_id}"
            )
        if self.payment_id is None:
            self._raise("ConfirmationStarted", now, payment_id=payment_id)

    def abandon_confirmation(self, now: datetime) -> None:
        """The confirmation could not go through: forget the payment, stay reserved."""
        if self.confirming:
            self._raise("ConfirmationAbandoned", now, payment_id=self.payment_id)

    def confirm(self, now: datetime) -> None:
        """The reservation is committed: confirmed; the follow-ups are due."""
        if self.payment_id is None:
            raise InvalidTransition("a confirmation needs a payment")
        self._check_move(OrderStatus.CONFIRMED)
        self._raise("OrderConfirmed", now, payment_id=self.payment_id)

    def can_cancel(self) -> tuple[bool, str]:
        """Whether :meth:`cancel` would succeed (or be a no-op), and why not."""
        if self.status is OrderStatus.CANCELLED:
            return True, "already cancelled"
        if self.status is OrderStatus.REJECTED:
            return False, "a rejected order holds nothing to cancel"
        if self.status is OrderStatus.CONFIRMED:
            return False, (
                "a confirmed order cannot be cancelled this way: its stock is committed and "
                "its payment taken (the v2 cancel refunds it)"
            )
        if self.confirming:
            return False, (
                f"order {self.id} is being confirmed with payment {self.payment_id}; "
                "retry the confirmation"
            )
        return True, ""

    def cancel(self, now: datetime, code: RejectionCode | None = None,
               detail: str | None = None) -> bool:
        """Cancel; True if the state changed (False: it already was cancelled).

        The stock the order may hold is to be released: ``release_status`` becomes
        ``pending`` until the catalog confirmed it.
        """
        allowed, why = self.can_cancel()
        if not allowed:
            raise InvalidTransition(why)
        if self.status is OrderStatus.CANCELLED:
            return False
        self._check_move(OrderStatus.CANCELLED)
        extra = {} if code is None else {"code": code.value, "detail": (detail or "")[:500]}
        self._raise("OrderCancelled", now, refunded=False, **extra)
        return True

    def cancel_for(self, code: RejectionCode, detail: str, now: datetime) -> bool:
        """Cancel (as :meth:`cancel`) and say why (``code``, ``detail``)."""
        return self.cancel(now, code, detail)

    def record_payment(self, payment_id: str, status: str, now: datetime) -> None:
        """What the payments service answered about the order's payment (v2 checkout).

        A payment only moves forward: an answer that would take it back (``authorized``
        after ``captured``, say: a late answer to a step another pass already went past)
        is ignored, as is one that changes nothing.
        """
        if (payment_id, status) == (self.payment_id, self.payment_status):
            return
        if PAYMENT_ORDER.get(status, 0) < PAYMENT_ORDER.get(self.payment_status or "", 0):
            return
        amount, currency = self.amount_due
        self._raise(PAYMENT_EVENTS.get(status, "PaymentRecorded"), now, payment_id=payment_id,
                    status=status, amount={"amount_minor": amount, "currency": currency})

    def abort_confirmation(self, code: RejectionCode, detail: str, now: datetime) -> None:
        """A confirmation that cannot finish (the payment could not be captured, or the
        saga ran out of time): cancelled; held stock is released, committed stock returned."""
        if not self.confirming:
            raise InvalidTransition("only an order being confirmed can be aborted")
        self._raise("OrderCancelled", now, refunded=False, code=code.value,
                    detail=detail[:500], return_stock=self.stock_committed)

    def cancel_refunded(self, code: RejectionCode, detail: str, now: datetime,
                        *, return_stock: bool = False) -> None:
        """A confirmed order whose payment was refunded becomes ``cancelled``.

        Its stock was committed: nothing is released (``release_status`` stays null); with
        ``return_stock`` it goes back on hand (``stock_returned`` pending). Its loyalty
        points are to be taken back (``loyalty_reversal_status`` pending) unless loyalty
        refused the award for good.
        """
        if self.status is not OrderStatus.CONFIRMED:
            raise InvalidTransition(f"only a confirmed order is refunded (it is {self.status})")
        # Also when the award is still open: an award whose answer was lost may exist.
        reverse = self.loyalty_status not in (None, FollowUp.FAILED)
        self._raise("OrderCancelled", now, refunded=True, reverse_loyalty=reverse,
                    code=code.value, detail=detail[:500], return_stock=return_stock)

    def record(self, what: str, outcome: FollowUp, now: datetime) -> None:
        """Set the state of a follow-up: ``loyalty``, ``notification`` or ``release``."""
        if what not in ("loyalty", "notification", "release"):
            raise ValueError(what)
        kind = "StockReleased" if (what, outcome) == ("release", FollowUp.DONE) \
            else "FollowUpRecorded"
        self._raise(kind, now, what=what, outcome=outcome.value)

    def award_recorded_after_cancel(self, now: datetime) -> None:
        """An award that landed after a refunded cancel: its points must be taken back
        too (reopens the reversal; loyalty replays a reversal already made)."""
        if self.status is OrderStatus.CANCELLED and \
                self.loyalty_reversal_status not in (FollowUp.PENDING, FollowUp.PENDING_RETRY):
            self._raise("LoyaltyReversalReopened", now)

    def record_reversal(self, outcome: FollowUp, now: datetime, *,
                        awarded: bool = True) -> None:
        """Set the state of taking the loyalty points back; ``awarded=False``: loyalty
        held no award, nothing was taken (``loyalty.not_awarded``)."""
        self._raise("LoyaltyReversalRecorded", now, outcome=outcome.value, awarded=awarded)

    def copy(self) -> Order:
        return replace(self, lines=list(self.lines), new_events=list(self.new_events))


def public_event(event: DomainEvent, sequence: int) -> OrderEvent:
    """The audit-trail entry of a stored event, as ``GET /v2/orders/{id}/events`` shows
    it (the v2 contract's dotted types and fields; replay-only fields left out)."""
    d, kind = event.data, event.type
    amount = d.get("amount")
    if kind in ("OrderPlaced", "OrderImported"):
        dotted = "order.placed" if kind == "OrderPlaced" else "order.imported"
        data: dict[str, Any] = {"status": "pending" if kind == "OrderPlaced" else d["status"],
                                "item_count": d["item_count"],
                                "amount": {"amount_minor": d["total"],
                                           "currency": d["currency"]}}
        if kind == "OrderImported":  # the v2 names (rejected reads as cancelled)
            data["status"] = "cancelled" if d["status"] == "rejected" else d["status"]
    elif kind == "StockReserved":
        dotted, data = "stock.reserved", {}
    elif kind == "CheckoutRequested":
        dotted, data = "checkout.requested", {}
    elif kind == "CurrencyConverted":
        dotted, data = "currency.converted", {"amount": d["settlement"]}
    elif kind == "StockCommitted":
        dotted, data = "stock.committed", {}
    elif kind == "StockReturnRecorded":
        dotted, data = f"stock.return_{d['outcome']}", {"outcome": d["outcome"]}
    elif kind == "OrderRejected":
        dotted, data = "order.rejected", {"status": "cancelled", "code": d["code"],
                                          "detail": d["detail"][:500]}
    elif kind == "ConfirmationStarted":
        dotted, data = "order.confirming", {"payment_id": d["payment_id"]}
    elif kind == "ConfirmationAbandoned":
        dotted, data = "order.confirmation_abandoned", {"payment_id": d["payment_id"]}
    elif kind == "OrderConfirmed":
        dotted, data = "order.confirmed", {"status": "confirmed", "payment_id": d["payment_id"]}
    elif kind == "OrderCancelled":
        dotted, data = "order.cancelled", {"status": "cancelled"}
        if d.get("code") is not None:
            data.update(code=d["code"], detail=d.get("detail", "")[:500])
    elif kind == "PaymentRequested":
        dotted, data = "payment.requested", {"amount": amount}
    elif kind.startswith("Payment"):
        dotted, data = f"payment.{d['status']}", {"payment_id": d["payment_id"],
                                                  "amount": amount}
    elif kind in ("FollowUpRecorded", "StockReleased"):
        dotted, data = f"{d['what']}.{d['outcome']}", {"outcome": d["outcome"]}
    elif kind == "LoyaltyReversalReopened":
        dotted, data = "loyalty.reversal_reopened", {"outcome": "pending"}
    elif kind == "LoyaltyReversalRecorded":
        outcome = d["outcome"]
        name = ("reversed" if d.get("awarded", True) else "not_awarded") \
            if outcome == FollowUp.DONE.value else f"reversal_{outcome}"
        dotted, data = f"loyalty.{name}", {"outcome": outcome}
    else:
        dotted, data = "order.changed", {}
    return OrderEvent(dotted, event.occurred_at, data, sequence)


def idempotency_key(order_id: str, step: str) -> str:
    """The key of one step toward another service: ``order-<id>-<step>``.

    Derived from the order id, so every retry of a step (by the request, a replay, or
    recovery) is the same request to the other service and cannot act twice.
    """
    return f"order-{order_id}-{step}"
