"""The v2 checkout: one call places and pays; a cancel refunds. Runs synchronously today.

:class:`CheckoutService` is the :class:`.services.OrderService` (v1 keeps using it as is)
plus the v2 use cases. A checkout is the v1 placement (price, store ``pending``, reserve
the stock) followed by the payment steps, each keyed by the order id so any repetition
(the client retrying with its ``Idempotency-Key``, a read, recovery) acts at most once::

    reserve stock → authorise payment → commit stock (confirm) → capture payment
                      │ declined             │ reservation lost
                      ▼                      ▼
              cancel + release stock   void payment + cancel

Every step is recorded on the order and in its audit trail (``order_events``). The
checkout saga (event-sourced, outbox, RabbitMQ) will run the same steps asynchronously
behind the same v2 contract; until then they run inside the request (the answer is
``202`` with the order as far as it got: a step whose service is down is resumed by
repeating the request with the same key). Compensation for a confirmed order is a
refund: its committed stock is not put back (the goods left the warehouse), and its
loyalty points are taken back (``reverse_award``) after the refund — best effort like the
award: a loyalty failure never undoes the refund; it is recorded
(``loyalty_reversal_status``) and retried by recovery, a read or a repeated cancel.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from charter.clock import parse_rfc3339, rfc3339, utcnow
from charter.problems import Conflict, Forbidden, ServiceUnavailable, Unprocessable
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork

from . import domain
from .domain import FollowUp, Order, OrderEvent, OrderStatus, RejectionCode
from .ports import (
    CartPort,
    CatalogPort,
    CheckoutPaymentsPort,
    DependencyUnavailable,
    LoyaltyPort,
    NotificationsPort,
    OrderFilter,
    OrderRepository,
    PaymentOutcome,
    PaymentsPort,
    Reversal,
)
from .services import (
    OPEN,
    Answer,
    Caller,
    OrderService,
    PlaceRequest,
    Rejected,
    idempotency_scope,
)

log = logging.getLogger(__name__)

V2_PLACE = "place_order_v2"
V2_CANCEL = "cancel_order_v2"


@dataclass(frozen=True)
class OrderSlice:
    """One page of orders and the cursor of the next one (``None``: last page)."""

    orders: list[Order]
    next_cursor: str | None


@dataclass(frozen=True)
class EventSlice:
    """One page of an order's events and the ``after`` of the next (``None``: last)."""

    events: list[OrderEvent]
    next_after: int | None


def encode_cursor(order: Order, flt: OrderFilter) -> str:
    """An opaque cursor after ``order`` for the filter ``flt`` (base64url JSON)."""
    raw = json.dumps([rfc3339(order.created_at), order.id, flt.status, flt.customer_id],
                     separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, flt: OrderFilter) -> tuple[datetime, str]:
    """``(created_at, id)`` of a cursor made for ``flt``; 422 for anything else.

    422, not 400: any string of the spec's cursor pattern is a well-formed request, so a
    cursor this API did not give out (or gave out for another filter) is content it
    cannot process — the declared answer (Schemathesis: "schema-valid request rejected").
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, order_id, status, customer = json.loads(raw)
        when = parse_rfc3339(str(created))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable("cursor is not a cursor this API gave out") from exc
    if [status, customer] != [flt.status, flt.customer_id]:
        raise Unprocessable("cursor belongs to another filter; start again without it")
    return when, str(order_id)


class CheckoutService(OrderService):
    """The orders use cases of v1 and v2 (v2: checkout with payment, refunding cancel)."""

    def __init__(
        self,
        uow: UnitOfWork[OrderRepository],
        catalog: CatalogPort,
        cart: CartPort,
        payments: PaymentsPort,
        loyalty: LoyaltyPort,
        notifications: NotificationsPort,
        checkout_payments: CheckoutPaymentsPort,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(uow, catalog, cart, payments, loyalty, notifications, clock=clock)
        self.checkout_payments = checkout_payments

    # -- checkout ------------------------------------------------------------------------
    def checkout(self, caller: Caller, key: str, request: PlaceRequest, method: str) -> Answer:
        """Place the order, then pay and confirm it (as far as the services allow now)."""
        try:
            answer = self.place(caller, key, request, operation=V2_PLACE,
                                also={"payment_method": method})
        except Rejected as rejected:  # v2: a final ``cancelled`` order, not a problem
            return Answer(rejected.order, 202, rejected.replayed)
        return Answer(self._pay(answer.order.id, method), 202, answer.replayed)

    def _pay(self, order_id: str, method: str) -> Order:
        """Drive a placed order through payment and confirmation; stops where a service
        is unavailable (repeating with the same method resumes there)."""
        order = self._load(order_id)
        if order.status is OrderStatus.PENDING:
            order = self._drive_reservation(order.id)
        if order.status is OrderStatus.RESERVED and not order.confirming:
            order = self._authorize(order, method)
        if order.confirming:
            order = self._confirm_paid(order)
        if order.status is OrderStatus.CONFIRMED and order.payment_status == "authorized":
            order = self._capture(order)
        return order

    def _authorize(self, order: Order, method: str) -> Order:
        try:
            outcome = self.checkout_payments.authorize(
                order.id, order.customer_id, order.total, order.currency, method,
                domain.idempotency_key(order.id, "authorize"))
        except DependencyUnavailable as exc:
            log.warning("order %s: payment not authorised yet: %s", order.id, exc.detail)
            return order
        now = self.clock()
        payment = outcome.payment
        if outcome.refused is not None or payment is None or payment.status != "authorized":
            why = outcome.refused or (payment.status if payment else "refused")

            def declined(o: Order) -> None:
                if payment is not None:
                    o.record_payment(payment.id, "declined", now)
                if o.status in (OrderStatus.PENDING, OrderStatus.RESERVED) and not o.confirming:
                    o.cancel_for(RejectionCode.PAYMENT_DECLINED, f"payment declined: {why}", now)

            self._change(order.id, declined)
            log.info("order %s cancelled: payment declined (%s)", order.id, why)
            return self._drive_release(order.id)

        def authorized(o: Order) -> None:
            o.record_payment(payment.id, "authorized", now)
            if o.status is OrderStatus.RESERVED:
                o.start_confirmation(payment.id, now)

        changed, _ = self._change(order.id, authorized)
        return changed

    def _confirm_paid(self, order: Order) -> Order:
        try:
            return self._drive_confirmation(order.id)
        except DependencyUnavailable as exc:  # recovery or a retry finishes it
            log.warning("order %s: confirmation postponed: %s", order.id, exc.detail)
            return self._load(order.id)
        except Conflict:  # the catalog no longer holds the stock: give the money back
            order = self._load(order.id)
            if order.payment_id is None and order.payment_status == "authorized":
                return self._compensate(order)
            raise

    def _compensate(self, order: Order) -> Order:
        """Void the authorisation of an order that could not be confirmed; cancel it."""
        payment_id = self._payment_id(order)
        if payment_id is not None:
            outcome = self._payment_step(lambda: self.checkout_payments.void(
                payment_id, domain.idempotency_key(order.id, "void")))
            if outcome.refused is not None:
                log.error("order %s: void refused: %s", order.id, outcome.refused)
        now = self.clock()

        def cancel(o: Order) -> None:
            if payment_id is not None:
                o.record_payment(payment_id, "voided", now)
            if o.status in (OrderStatus.PENDING, OrderStatus.RESERVED) and not o.confirming:
                o.cancel_for(RejectionCode.INSUFFICIENT_STOCK,
                             "the stock could not be committed; the payment was voided", now)

        self._change(order.id, cancel)
        return self._drive_release(order.id)

    def _payment_id(self, order: Order) -> str | None:
        """The payment of the order (its events remember it after an abandoned confirm)."""
        if order.payment_id is not None:
            return order.payment_id
        with self.uow.read() as repo:
            events = repo.events(order.id, 0, 1000)
        ids = [str(e.data["payment_id"]) for e in events if e.data.get("payment_id")]
        return ids[-1] if ids else None

    def _capture(self, order: Order) -> Order:
        assert order.payment_id is not None
        payment_id = order.payment_id
        try:
            outcome = self.checkout_payments.capture(
                payment_id, domain.idempotency_key(order.id, "capture"))
        except DependencyUnavailable as exc:
            log.warning("order %s: capture postponed: %s", order.id, exc.detail)
            return order
        if outcome.refused is not None:
            log.error("order %s: capture refused: %s", order.id, outcome.refused)
            return order
        now = self.clock()
        changed, _ = self._change(order.id,
                                  lambda o: o.record_payment(payment_id, "captured", now))
        return changed

    @staticmethod
    def _payment_step(call: Callable[[], PaymentOutcome]) -> PaymentOutcome:
        try:
            return call()
        except DependencyUnavailable as exc:
            raise ServiceUnavailable(
                f"the payments service could not be reached ({exc.detail}); nothing "
                "changed: retry with the same Idempotency-Key",
                kind="upstream-unavailable") from exc

    # -- recovery ------------------------------------------------------------------------
    def resume_pending(self, now: datetime | None = None) -> dict[str, int]:
        """v1's recovery (:meth:`OrderService.resume_pending`), then the captures still due
        on v2 orders confirmed meanwhile and the loyalty reversals of refunded ones."""
        report = super().resume_pending(now)
        before = now or self.clock()
        with self.uow.read() as repo:
            ids = repo.needing_recovery(before, self.recovery_batch)
        for order_id in ids:
            order = self._load(order_id)
            if order.status is OrderStatus.CONFIRMED and order.payment_status == "authorized":
                order = self._capture(order)
                report[f"capture:{order.payment_status}"] = \
                    report.get(f"capture:{order.payment_status}", 0) + 1
            elif order.status is OrderStatus.CANCELLED \
                    and order.loyalty_reversal_status in OPEN:
                order = self._drive_reversal(order_id)
                what = f"reversal:{order.loyalty_reversal_status}"
                report[what] = report.get(what, 0) + 1
        return report

    # -- reads ---------------------------------------------------------------------------
    def read(self, caller: Caller, order_id: str) -> Order:
        """The order; a capture or loyalty reversal still due is attempted first."""
        order = self.get(caller, order_id)
        if order.status is OrderStatus.CONFIRMED and order.payment_status == "authorized":
            order = self._capture(order)
        elif order.status is OrderStatus.CANCELLED and order.loyalty_reversal_status in OPEN:
            order = self._drive_reversal(order.id)
        return order

    def list_after(self, principal: Principal, *, status: str | None = None,
                   customer_id: str | None = None, cursor: str | None = None,
                   limit: int = 20) -> OrderSlice:
        """One page of orders, newest first, after ``cursor`` (v2 statuses)."""
        if not principal.is_privileged:
            if customer_id is not None and customer_id != principal.sub:
                raise Forbidden("customers may list only their own orders")
            customer_id = principal.sub
        flt = OrderFilter(customer_id=customer_id, status=status, v2_status=True)
        after = decode_cursor(cursor, flt) if cursor else None
        with self.uow.read() as repo:
            found = repo.page_after(flt, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return OrderSlice(found, encode_cursor(found[-1], flt) if more else None)

    def events(self, caller: Caller, order_id: str, after: int = 0,
               limit: int = 20) -> EventSlice:
        """The order's audit trail (events after ``after``), if the caller may see it."""
        self._visible(caller.principal, order_id)
        with self.uow.read() as repo:
            found = repo.events(order_id, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return EventSlice(found, found[-1].sequence if more else None)

    # -- cancelling ----------------------------------------------------------------------
    def cancel_and_refund(self, caller: Caller, order_id: str, key: str) -> Answer:
        """Cancel: release a pending order's stock, refund (or void) a confirmed one's
        payment. A cancelled order stays as it is (200)."""
        principal = caller.principal
        scope = idempotency_scope(V2_CANCEL, principal.sub)
        request = {"order_id": order_id}
        replayed = self._replayed(scope, key, request) is not None
        order = self._visible(principal, order_id)
        code = (RejectionCode.CANCELLED_BY_CUSTOMER if principal.sub == order.customer_id
                else RejectionCode.CANCELLED_BY_STAFF)
        detail = f"cancelled by {principal.sub}"
        if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            pass
        elif order.confirming:
            raise Conflict(f"order {order.id} is being confirmed; retry shortly",
                           kind="invalid-order-state")
        elif order.status is OrderStatus.CONFIRMED:
            order = self._refund(order, code, detail)
        else:
            now = self.clock()
            self._change(order.id, lambda o: o.cancel_for(code, detail, now))
            log.info("order %s cancelled by %s", order.id, principal.sub)
        self._remember(scope, key, request, order.id)
        self._drive_release(order.id)
        return Answer(self._drive_reversal(order.id), 200, replayed)

    def _refund(self, order: Order, code: RejectionCode, detail: str) -> Order:
        payment_id = order.payment_id
        if payment_id is None:  # pragma: no cover - a confirmed order always has one
            raise Conflict(f"order {order.id} has no payment to refund")
        if order.payment_status == "authorized":  # never captured: release the hold
            outcome = self._payment_step(lambda: self.checkout_payments.void(
                payment_id, domain.idempotency_key(order.id, "void")))
            final = "voided"
        else:
            outcome = self._payment_step(lambda: self.checkout_payments.refund(
                payment_id, domain.idempotency_key(order.id, "refund"), detail))
            final = "refunded"
        if outcome.refused is not None:
            raise Conflict(f"the payments service refused to give the money back: "
                           f"{outcome.refused}", kind="refund-refused")
        now = self.clock()

        def refunded(o: Order) -> None:
            o.record_payment(payment_id, final, now)
            if o.status is OrderStatus.CONFIRMED:
                o.cancel_refunded(code, detail, now)

        changed, _ = self._change(order.id, refunded)
        log.info("order %s cancelled and its payment %s %s", order.id, payment_id, final)
        return changed

    def _drive_reversal(self, order_id: str) -> Order:
        """Take back the loyalty points of a refunded order and record how it went.

        Never raises for loyalty: the refund stands whatever loyalty answers. Unavailable:
        ``pending_retry`` (retried); refused for good: ``failed`` (logged); no award at
        loyalty: done, nothing taken — unless this order recorded its award as done, which
        is a contradiction to look at (``failed``), not a success.
        """
        order = self._load(order_id)
        if order.status is not OrderStatus.CANCELLED \
                or order.loyalty_reversal_status not in OPEN:
            return order
        awarded = True
        try:
            result = self.loyalty.reverse_award(order.id)
        except DependencyUnavailable as exc:
            log.warning("loyalty reversal for order %s failed, will retry: %s", order.id,
                        exc.detail or exc)
            outcome = FollowUp.PENDING_RETRY
        except Exception:  # best effort: never let it break the cancel
            log.exception("loyalty reversal for order %s failed, will retry", order.id)
            outcome = FollowUp.PENDING_RETRY
        else:
            outcome = FollowUp.DONE
            if result is Reversal.NOT_AWARDED:
                awarded = False
                if order.loyalty_status is FollowUp.DONE:
                    log.error("loyalty has no award for order %s, which recorded one",
                              order.id)
                    outcome = FollowUp.FAILED
            elif result is Reversal.REFUSED:
                log.error("loyalty refused to reverse the award of order %s", order.id)
                outcome = FollowUp.FAILED
        now = self.clock()

        def record(o: Order) -> None:
            if o.loyalty_reversal_status in OPEN:
                o.record_reversal(outcome, now, awarded=awarded)

        order, _ = self._change(order.id, record)
        return order
