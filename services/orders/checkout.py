"""The checkout saga, orchestrated by orders, and the other v2 use cases.

:class:`CheckoutService` is the :class:`.services.OrderService` plus the saga that both
API versions drive. The saga's state is the order's event stream (``docs/saga.md``)::

    reserve stock → convert to EUR → authorise → commit stock → capture → confirm
         │ short        │ no rate        │ declined    │ lost          │ refused
         ▼              ▼                ▼             ▼               ▼
      rejected      cancel, release  cancel, release  cancel, void   cancel, void,
                                                                     return stock

v2 (``POST /v2/orders``) places the order, reserves its stock when the catalog answers
and hands the rest to a :class:`.saga_runner.SagaRunner`, answering ``202`` at once. v1
keeps its contract: placing runs the saga to ``reserved``; ``confirm`` checks the
client's payment and continues from the commit and capture steps. Every call to another
service carries a key derived from the order and the step (``order-<id>-<step>``), so a
repeated step never acts twice; every write checks the stream's version. A step whose
service is unreachable is retried (the runner, then the recovery sweep); past
``ORDERS_CHECKOUT_DEADLINE`` it counts as a refusal and the saga compensates. While a
pass runs, every log line carries ``saga_id`` (the order id).

A confirmed order is cancelled by a refund (its committed stock is not put back: the
goods left), and its loyalty points are taken back — best effort, tracked
(``loyalty_reversal_status``) and retried by recovery, a read or a repeated cancel.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from charter.clock import parse_rfc3339, rfc3339, utcnow
from charter.observability.logs import saga_id
from charter.observability.tracing import step_span
from charter.problems import Conflict, Forbidden, ServiceUnavailable, Unprocessable
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork

from . import domain
from .domain import (
    SETTLEMENT_CURRENCY,
    Order,
    OrderEvent,
    OrderStatus,
    RejectionCode,
)
from .ports import (
    CartPort,
    CatalogPort,
    CheckoutPaymentsPort,
    DependencyUnavailable,
    ExchangePort,
    OrderFilter,
    OrderRepository,
    PaymentOutcome,
    PaymentsPort,
    TransitionOutcome,
)
from .saga_runner import InlineSagaRunner, SagaRunner
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


def awaiting_authorisation(order: Order) -> bool:
    """The order is where an authorisation's answer belongs: reserved, not confirming,
    its payment requested (or, for orders placed before that step, not yet known). A
    second pass of the saga that got the same (keyed) answer finds it recorded."""
    return (order.status is OrderStatus.RESERVED and not order.confirming
            and order.payment_status in (None, "requested"))


class CheckoutService(OrderService):
    """The orders use cases of v1 and v2, and the checkout saga that both drive."""

    def __init__(
        self,
        uow: UnitOfWork[OrderRepository],
        catalog: CatalogPort,
        cart: CartPort,
        payments: PaymentsPort,
        checkout_payments: CheckoutPaymentsPort,
        exchange: ExchangePort | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        deadline: timedelta = timedelta(seconds=60),
        runner: SagaRunner | None = None,
    ) -> None:
        super().__init__(uow, catalog, cart, payments, clock=clock)
        self.checkout_payments = checkout_payments
        self.exchange = exchange
        self.deadline = deadline
        self.runner: SagaRunner = runner or InlineSagaRunner()

    # -- checkout ------------------------------------------------------------------------
    def checkout(self, caller: Caller, key: str, request: PlaceRequest, method: str,
                 *, wait: float = 0.0) -> Answer:
        """Place the order (its stock reserved now when the catalog answers), then hand it
        to the saga, which pays and confirms it (or compensates): 202 at once, or — with
        ``wait`` seconds (``Prefer: wait``) — once the saga settled or the time is up
        (``Answer.waited``: the wait was honoured)."""
        try:
            answer = self.place(caller, key, request, operation=V2_PLACE,
                                also={"payment_method": method}, checkout_method=method)
        except Rejected as rejected:  # v2: a final ``cancelled`` order, not a problem
            return Answer(rejected.order, 202, rejected.replayed, waited=wait > 0)
        if wait <= 0:
            self.runner.submit(answer.order.id, self.advance)
            return Answer(self._load(answer.order.id), 202, answer.replayed)
        waited, settled = self.runner.submit_and_wait(answer.order.id, self.advance, wait)
        if settled is not None and self.settled(settled):
            return Answer(settled, 202, answer.replayed, waited=waited)
        return Answer(self._load(answer.order.id), 202, answer.replayed, waited=waited)

    def advance(self, order_id: str) -> Order:
        """One pass of the checkout saga: every step the services allow now, in order;
        a step whose service is unreachable stops the pass (the runner comes back).

        reserve → convert (not EUR) → authorise → commit stock → capture → confirm; a
        refusal compensates in reverse (void the authorisation, return committed stock,
        release held stock) and cancels with the reason; past the deadline an
        unreachable service counts as a refusal.
        """
        token = saga_id.set(order_id)
        try:
            order = self._load(order_id)
            if order.status is OrderStatus.PENDING:
                order = self._drive_reservation(order.id)
            if order.checkout and order.status is OrderStatus.RESERVED and not order.confirming:
                if order.needs_conversion:
                    order = self._convert(order)
                if order.status is OrderStatus.RESERVED and not order.needs_conversion \
                        and not order.confirming:
                    order = self._authorize(order)
            if order.confirming:
                order = self._finish(order)
            elif order.status is OrderStatus.CONFIRMED and order.payment_status == "authorized":
                order = self._capture_confirmed(order)
            if self._late(order):
                order = self._give_up(order)
            if order.status is OrderStatus.CANCELLED:
                order = self._compensate(order)
            return order
        finally:
            saga_id.reset(token)

    def settled(self, order: Order) -> bool:
        """Nothing left for the saga to do: final, paid if confirmed, compensated if not."""
        if order.status is OrderStatus.CONFIRMED:
            return order.payment_status != "authorized"
        if order.status is OrderStatus.REJECTED:
            return True
        if order.status is not OrderStatus.CANCELLED:
            return False
        return (order.release_status not in OPEN and order.stock_returned not in OPEN
                and order.payment_status not in ("requested", "authorized"))

    def _late(self, order: Order) -> bool:
        return (order.checkout and not order.is_final
                and self.clock() - order.created_at > self.deadline)

    # -- the steps (each a span: charter.observability.tracing.step_span) ----------------
    @step_span("convert")
    def _convert(self, order: Order) -> Order:
        """The total in the settlement currency (EUR), before authorising."""
        if self.exchange is None:
            raise ServiceUnavailable("orders has no exchange client configured",
                                     kind="upstream-unavailable")
        try:
            outcome = self.exchange.convert(order.total, order.currency, SETTLEMENT_CURRENCY)
        except DependencyUnavailable as exc:
            log.warning("order %s: conversion postponed: %s", order.id, exc.detail)
            return order
        now = self.clock()
        conversion = outcome.conversion
        if conversion is None:
            why = f"no exchange rate from {order.currency} to EUR: {outcome.refused}"
            order, _ = self._change(order.id, lambda o: o.cancel_for(
                RejectionCode.RATE_UNAVAILABLE, why, now) if not o.is_final else None)
            log.info("order %s cancelled: %s", order.id, why)
            return order
        order, _ = self._change(order.id, lambda o: o.record_conversion(
            conversion.amount, conversion.currency, conversion.rate, conversion.stale, now))
        log.info("order %s: %s %s is %s %s (rate %s%s)", order.id, order.total, order.currency,
                 conversion.amount, conversion.currency, conversion.rate,
                 ", stale" if conversion.stale else "")
        return order

    @step_span("authorise")
    def _authorize(self, order: Order) -> Order:
        method = self._method(order.id)
        if method is None:  # pragma: no cover - a v2 order always has its method
            log.error("order %s: no payment method stored", order.id)
            return order
        now = self.clock()
        order, _ = self._change(order.id, lambda o: o.request_payment(now))
        amount, currency = order.amount_due
        try:
            outcome = self.checkout_payments.authorize(
                order.id, order.customer_id, amount, currency, method,
                domain.idempotency_key(order.id, "authorize"))
        except DependencyUnavailable as exc:
            log.warning("order %s: payment not authorised yet: %s", order.id, exc.detail)
            return order
        now = self.clock()
        payment = outcome.payment
        if outcome.refused is not None or payment is None or payment.status != "authorized":
            why = outcome.refused or (payment.status if payment else "refused")

            def declined(o: Order) -> None:
                if not awaiting_authorisation(o):  # another pass got here first
                    return
                if payment is not None:
                    o.record_payment(payment.id, "declined", now)
                o.cancel_for(RejectionCode.PAYMENT_DECLINED, f"payment declined: {why}", now)

            order, _ = self._change(order.id, declined)
            log.info("order %s cancelled: payment declined (%s)", order.id, why)
            return order

        def authorized(o: Order) -> None:
            if not awaiting_authorisation(o):  # another pass recorded it (and went on)
                return
            o.record_payment(payment.id, "authorized", now)
            o.start_confirmation(payment.id, now)

        changed, _ = self._change(order.id, authorized)
        log.info("order %s: payment %s authorised", order.id, payment.id)
        return changed

    def _finish(self, order: Order) -> Order:
        """Commit the stock, capture the payment, confirm (v1's confirm joins here)."""
        if not order.stock_committed:
            try:
                with step_span("commit"):
                    result = self.catalog.commit(order.id,
                                                 domain.idempotency_key(order.id, "commit"))
            except DependencyUnavailable as exc:
                log.warning("order %s: stock not committed yet: %s", order.id, exc.detail)
                return order
            now = self.clock()
            if result.outcome is not TransitionOutcome.DONE:
                log.error("catalog refused to commit the stock of order %s: %s %s", order.id,
                          result.outcome, result.detail)
                if not order.checkout:  # v1: the client may retry with another payment
                    self._change(order.id, lambda o: o.abandon_confirmation(now))
                    raise Conflict(f"the catalog no longer holds the stock of order {order.id}",
                                   kind="reservation-not-held")
                order, _ = self._change(order.id, lambda o: o.abort_confirmation(
                    RejectionCode.INSUFFICIENT_STOCK,
                    "the stock could not be committed; the payment was voided", now)
                    if o.confirming else None)
                return order
            order, _ = self._change(order.id, lambda o: o.mark_committed(now)
                                    if o.confirming else None)
        if order.confirming and order.payment_status == "authorized":
            order = self._capture(order)  # and confirms, in the same transaction
        elif order.confirming and order.stock_committed:  # paid by the client (v1)
            now = self.clock()
            order, _ = self._change(order.id, lambda o: o.confirm(now) if o.confirming else None)
        if order.status is OrderStatus.CONFIRMED:
            with step_span("confirm"):
                log.info("order %s confirmed with payment %s", order.id, order.payment_id)
                order = self._drive_follow_ups(order.id)
        return order

    def _drive_confirmation(self, order_id: str) -> Order:
        """v1's confirm and recovery continue the saga here (commit, capture, confirm);
        :class:`DependencyUnavailable` when it could not finish now."""
        order = self._load(order_id)
        if not order.confirming:
            return self._drive_follow_ups(order.id) if order.status is OrderStatus.CONFIRMED \
                else order
        order = self._finish(order)
        if order.confirming:
            raise DependencyUnavailable(f"order {order.id}: the catalog or payments could not "
                                        "finish the confirmation now")
        return order

    @step_span("capture")
    def _capture(self, order: Order) -> Order:
        """Capture the authorisation; the capture and the confirmation are recorded in one
        transaction (a crash before it: the keyed capture is asked again and replayed)."""
        assert order.payment_id is not None
        payment_id = order.payment_id
        try:
            outcome = self.checkout_payments.capture(
                payment_id, domain.idempotency_key(order.id, "capture"))
        except DependencyUnavailable as exc:
            log.warning("order %s: capture postponed: %s", order.id, exc.detail)
            return order
        now = self.clock()
        if outcome.refused is not None:
            log.error("order %s: capture refused: %s", order.id, outcome.refused)
            order, _ = self._change(order.id, lambda o: o.abort_confirmation(
                RejectionCode.PAYMENT_FAILED, f"the payment could not be captured: "
                f"{outcome.refused}", now) if o.confirming else None)
            return order

        def captured(o: Order) -> None:
            o.record_payment(payment_id, "captured", now)
            if o.confirming and o.stock_committed:
                o.confirm(now)

        changed, _ = self._change(order.id, captured)
        return changed

    def _give_up(self, order: Order) -> Order:
        """Past the deadline: what is still waiting for an unreachable service ends."""
        now = self.clock()
        if order.status is OrderStatus.PENDING:
            code, why = RejectionCode.CHECKOUT_TIMEOUT, "the catalog did not answer in time"
        elif order.confirming:
            code, why = RejectionCode.PAYMENT_FAILED, "the checkout could not finish in time"
        elif order.needs_conversion:
            code, why = RejectionCode.RATE_UNAVAILABLE, "no exchange rate in time"
        else:
            code, why = RejectionCode.PAYMENT_FAILED, "the payment was not authorised in time"

        def end(o: Order) -> None:
            if o.confirming:
                o.abort_confirmation(code, why, now)
            elif not o.is_final:
                o.cancel_for(code, why, now)

        order, _ = self._change(order.id, end)
        log.warning("order %s cancelled: %s", order.id, why)
        return order

    # -- compensation --------------------------------------------------------------------
    def _compensate(self, order: Order) -> Order:
        """Undo what a cancelled order still holds: the authorisation, committed stock,
        held stock. Each is keyed and tracked; what cannot be done now is retried."""
        if order.payment_status in ("requested", "authorized"):
            order = self._void(order)
        if order.stock_returned in OPEN:
            with step_span("return", compensation=True):
                order = self._drive_stock(order.id, "return")
        if order.release_status in OPEN:
            with step_span("release", compensation=True):
                order = self._drive_release(order.id)
        return order

    @step_span("void", compensation=True)
    def _void(self, order: Order) -> Order:
        """Release the order's authorisation. One requested but never answered is asked
        for again with the same key (payments replays it, or makes it) and then voided."""
        payment_id = self._payment_id(order)
        try:
            if payment_id is None:
                amount, currency = order.amount_due
                method = self._method(order.id) or "tok_unknown"
                found = self.checkout_payments.authorize(
                    order.id, order.customer_id, amount, currency, method,
                    domain.idempotency_key(order.id, "authorize"))
                if found.payment is None or found.payment.status != "authorized":
                    now = self.clock()
                    status = found.payment.status if found.payment else "declined"
                    pid = found.payment.id if found.payment else ""
                    order, _ = self._change(order.id,
                                            lambda o: o.record_payment(pid, status, now))
                    return order
                payment_id = found.payment.id
            outcome = self.checkout_payments.void(payment_id,
                                                  domain.idempotency_key(order.id, "void"))
        except DependencyUnavailable as exc:
            log.warning("order %s: authorisation not voided yet: %s", order.id, exc.detail)
            return order
        if outcome.refused is not None:
            log.error("order %s: void refused: %s", order.id, outcome.refused)
        now = self.clock()
        final = outcome.payment.status if outcome.payment is not None else "voided"
        pid = payment_id
        order, _ = self._change(order.id, lambda o: o.record_payment(pid, final, now))
        return order

    def _payment_id(self, order: Order) -> str | None:
        """The payment of the order (its events remember it after an abandoned confirm)."""
        if order.payment_id is not None:
            return order.payment_id
        with self.uow.read() as repo:
            events = repo.events(order.id, 0, 1000)
        ids = [str(e.data["payment_id"]) for e in events if e.data.get("payment_id")]
        return ids[-1] if ids else None

    def _method(self, order_id: str) -> str | None:
        with self.uow.read() as repo:
            return repo.payment_method(order_id)

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
    def resume_pending(self, now: datetime | None = None,
                       only: list[str] | None = None) -> dict[str, int]:
        """v1's recovery (:meth:`OrderService.resume_pending`) for v1 orders, the saga for
        checkouts, and the loyalty reversals of refunded orders."""
        before = now or self.clock()
        if only is None:
            with self.uow.read() as repo:
                ids = repo.needing_recovery(before, self.recovery_batch)
        else:
            ids = only
        report: dict[str, int] = {}
        v1: list[str] = []
        for order_id in ids:
            try:
                order = self._load(order_id)
                if order.checkout and not self.settled(order):
                    order = self.advance(order_id)
                    what = f"saga:{order.status}"
                elif order.status is OrderStatus.CONFIRMED \
                        and order.payment_status == "authorized":
                    order = self._capture_confirmed(order)
                    what = f"capture:{order.payment_status}"
                else:
                    v1.append(order_id)
                    continue
            except Exception:  # one bad order must not stop the others
                log.exception("recovery of order %s failed", order_id)
                what = "errors"
            report[what] = report.get(what, 0) + 1
        if v1:
            for what, count in super().resume_pending(now, only=v1).items():
                report[what] = report.get(what, 0) + count
        return report

    @step_span("capture")
    def _capture_confirmed(self, order: Order) -> Order:
        """A legacy order confirmed before its capture (the capture came after, then)."""
        assert order.payment_id is not None
        payment_id = order.payment_id
        try:
            outcome = self.checkout_payments.capture(
                payment_id, domain.idempotency_key(order.id, "capture"))
        except DependencyUnavailable:
            return order
        if outcome.refused is not None:
            log.error("order %s: capture refused: %s", order.id, outcome.refused)
            return order
        now = self.clock()
        changed, _ = self._change(order.id,
                                  lambda o: o.record_payment(payment_id, "captured", now))
        return changed

    # -- reads ---------------------------------------------------------------------------
    def read(self, caller: Caller, order_id: str) -> Order:
        """The order (v1's unfinished stock work on it is retried first)."""
        order = self.get(caller, order_id)
        if order.status is OrderStatus.CONFIRMED and order.payment_status == "authorized":
            order = self._capture_confirmed(order)
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
        """Cancel: a checkout on its way is compensated (held stock released, a requested
        authorisation voided); a confirmed order is refunded (or its authorisation voided),
        its committed stock returned with a keyed movement, and loyalty told by event. A
        cancelled order stays as it is (200)."""
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
        order = self._load(order.id)
        if order.status is OrderStatus.CANCELLED:
            order = self._compensate(order)
        return Answer(order, 200, replayed)

    @step_span("refund", compensation=True)
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
                o.cancel_refunded(code, detail, now, return_stock=True)

        changed, _ = self._change(order.id, refunded)
        log.info("order %s cancelled and its payment %s %s", order.id, payment_id, final)
        return changed

    def _drive_reversal(self, order_id: str) -> Order:
        """Loyalty takes the points back on ``orders.OrderCancelled`` (``after_confirmation``)
        and replies; :mod:`.messaging` records it (``loyalty_reversal_status``)."""
        return self._load(order_id)
