"""Order use cases: place, read, list, cancel, confirm, and the recovery of unfinished work.

The rule everywhere: **write the intent down first, then ask the other service, then
record the answer** — each step in its own transaction, each call to another service
keyed by an idempotency key derived from the order id (``order-<id>-reserve``,
``-commit``, ``-release``, ``-confirmation``). A crash, a timeout or a lost answer at any
point leaves an order whose state says what is still to do, and doing it again is
harmless. :meth:`OrderService.resume_pending` does it for every such order (at start-up,
periodically, and a read of a pending order does it for that order).

Each transaction is one unit of work (:class:`charter.unit_of_work.UnitOfWork`) handing out
the :class:`.ports.OrderRepository`: ``with self.uow.write() as repo`` for a change,
``self.uow.read()`` for a query. No SQLAlchemy here: ``app.py`` passes the SQL
implementation.

So there is never reserved stock without an order row (the order is stored before the
catalog is asked), never a ``reserved`` order without a reservation (it becomes reserved
only after the catalog said so), and never a confirmation that takes the stock twice.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from charter.clock import utcnow
from charter.idempotency import fingerprint, run_once
from charter.observability.tracing import step_span
from charter.problems import (
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    ServiceUnavailable,
    Unprocessable,
)
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork, WriteConflict
from charter.usecases import Page, Refusals, visible

from . import domain
from .domain import FollowUp, Order, OrderLine, OrderStatus, RejectionCode, Source
from .ports import (
    CartPort,
    CatalogPort,
    DependencyUnavailable,
    OrderFilter,
    OrderRepository,
    Payment,
    PaymentsPort,
    ReserveOutcome,
    TransitionOutcome,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
OPEN = (FollowUp.PENDING, FollowUp.PENDING_RETRY)
USABLE_PAYMENT_STATES = frozenset({"authorized", "captured"})


def as_problem(exc: domain.OrderError) -> Problem:
    """Domain refusals become problems: a bad request 422, a forbidden change 409."""
    if isinstance(exc, domain.InvalidTransition):
        return Conflict(str(exc), kind="invalid-order-state")
    return Unprocessable(str(exc))


business_rules = Refusals(domain.OrderError, as_problem)
"""``with business_rules():`` answers a refused business rule with its problem."""


def _customer(order: Order) -> str:
    return order.customer_id


def idempotency_scope(operation: str, subject: str) -> str:
    """Keys are per caller: two customers may pick the same key without colliding."""
    scope = f"orders.{operation}:{subject}"
    if len(scope) > 100:  # the column's width; hash long subjects
        scope = f"orders.{operation}:#{hashlib.sha256(subject.encode()).hexdigest()[:40]}"
    return scope


@dataclass(frozen=True)
class Caller:
    """Who asks: the verified token's principal, its raw ``Authorization`` and e-mail."""

    principal: Principal
    authorization: str | None = None
    email: str | None = None

    @classmethod
    def from_token_info(cls, token_info: Mapping[str, Any],
                        authorization: str | None = None) -> Caller:
        email = token_info.get("email")
        return cls(Principal.from_token_info(token_info), authorization,
                   str(email) if email else None)


@dataclass(frozen=True)
class PlaceRequest:
    """What to order: the caller's cart, or explicit ``(product_id, quantity)`` items."""

    source: Source
    items: tuple[tuple[int, int], ...] = ()
    currency: str = domain.DEFAULT_CURRENCY

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PlaceRequest:
        currency = str(body.get("currency") or domain.DEFAULT_CURRENCY)
        if body.get("source") == Source.CART.value:
            return cls(Source.CART, (), currency)
        items = tuple((int(i["product_id"]), int(i["quantity"])) for i in body["items"])
        return cls(Source.ITEMS, items, currency)

    def document(self) -> dict[str, Any]:
        """What identifies the request for its idempotency key."""
        if self.source is Source.CART:
            return {"source": "cart", "currency": self.currency}
        return {"items": [list(i) for i in self.items], "currency": self.currency}


@dataclass(frozen=True)
class Answer:
    """An order and how to answer with it."""

    order: Order
    status: int
    replayed: bool = False
    waited: bool = False  # a ``Prefer: wait`` was honoured


class Rejected(Exception):
    """The placement ended with a ``rejected`` order (the API answers a problem)."""

    def __init__(self, order: Order, replayed: bool) -> None:
        super().__init__(order.reason or "rejected")
        self.order = order
        self.replayed = replayed


class OrderService:
    """The orders use cases over one database and the ports to the other services."""

    def __init__(
        self,
        uow: UnitOfWork[OrderRepository],
        catalog: CatalogPort,
        cart: CartPort,
        payments: PaymentsPort,
        *,
        clock: Callable[[], datetime] = utcnow,
        recovery_batch: int = 200,
    ) -> None:
        self.uow = uow
        self.catalog = catalog
        self.cart = cart
        self.payments = payments
        self.clock = clock
        self.recovery_batch = recovery_batch

    # -- units of work -------------------------------------------------------------------
    def _load(self, order_id: str) -> Order:
        with self.uow.read() as repo:
            order = repo.get(order_id)
        if order is None:
            raise NotFound(f"order {order_id} does not exist")
        return order

    def _visible(self, principal: Principal, order_id: str) -> Order:
        """The order if the caller may see it; someone else's order is 404, not 403."""
        with self.uow.read() as repo:
            order = repo.get(order_id)
        return visible(principal, order, _customer, f"order {order_id} does not exist")

    def _change(self, order_id: str, mutate: Callable[[Order], T]) -> tuple[Order, T]:
        """Lock the order, apply ``mutate`` to its current state, store it (one transaction)."""
        with business_rules(), self.uow.write() as repo:
            order = repo.get(order_id, lock=True)
            if order is None:
                raise NotFound(f"order {order_id} does not exist")
            result = mutate(order)
            repo.save(order)
            return order, result

    def _remember(self, scope: str, key: str, request: Any, order_id: str) -> None:
        """Store a key's answer (the order id) once the keyed request succeeded."""
        fp = fingerprint(request)
        try:
            with self.uow.write() as repo:
                repo.idempotency.claim(scope, key, fp)
                repo.idempotency.complete(scope, key, 200, {"order_id": order_id})
        except WriteConflict:  # a concurrent request with the same key stored it first
            pass

    def _replayed(self, scope: str, key: str, request: Any) -> str | None:
        """The order id a key was used for, or ``None``; 422 if used for another request."""
        with self.uow.read() as repo:
            stored = repo.idempotency.lookup(scope, key, fingerprint(request))
        return None if stored is None else str(stored.body["order_id"])

    # -- reads ---------------------------------------------------------------------------
    def get(self, caller: Caller, order_id: str) -> Order:
        """The order; unfinished stock work on it (reservation, release) is retried first."""
        order = self._visible(caller.principal, order_id)
        if order.status is OrderStatus.PENDING:
            order = self._drive_reservation(order.id)
        elif order.status is OrderStatus.CANCELLED and order.release_status in OPEN:
            order = self._drive_release(order.id)
        return order

    def list_page(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> Page[Order]:
        """One page, newest first: a customer's own orders, or anyone's for the privileged."""
        if not principal.is_privileged:
            if customer_id is not None and customer_id != principal.sub:
                raise Forbidden("customers may list only their own orders")
            customer_id = principal.sub
        with self.uow.read() as repo:
            orders, total = repo.page(OrderFilter(customer_id=customer_id, status=status),
                                      Page.offset(page, page_size), page_size)
        return Page(orders, page, page_size, total)

    # -- placing -------------------------------------------------------------------------
    def place(self, caller: Caller, key: str, request: PlaceRequest, *,
              operation: str = "place_order",
              also: Mapping[str, Any] | None = None,
              checkout_method: str | None = None) -> Answer:
        """Price, store ``pending`` (with the key), reserve; see the module docstring.

        ``operation`` names the key's scope (v2 keys never collide with v1's); ``also``
        joins the request's fingerprint (v2: the payment method). ``checkout_method``
        makes the order a v2 checkout that pays with it (the saga takes it from there).
        """
        principal = caller.principal
        scope = idempotency_scope(operation, principal.sub)
        document = {**request.document(), **(also or {})}
        existing = self._replayed(scope, key, document)
        if existing is not None:
            return self._placement_answer(self._drive_reservation(existing), replayed=True)

        lines = self._price(caller, request)
        with business_rules():
            order = Order.place(
                str(uuid.uuid4()),
                principal.sub,
                lines,
                request.currency,
                self.clock(),
                source=request.source,
                customer_email=caller.email,
            )
            if checkout_method is not None:
                order.request_checkout(order.created_at)
                order.payment_method = checkout_method

        def store(repo: OrderRepository) -> tuple[int, dict[str, Any]]:
            repo.add(order)
            return 201, {"order_id": order.id}

        outcome = run_once(self.uow, scope=scope, key=key, request=document, action=store)
        if outcome.replayed:  # a concurrent request with the same key won
            return self._placement_answer(
                self._drive_reservation(str(outcome.body["order_id"])), replayed=True
            )
        log.info("order %s placed by %s (%s lines, total %s %s)", order.id, principal.sub,
                 len(order.lines), order.total, order.currency)
        placed = self._drive_reservation(order.id)
        if placed.status is OrderStatus.RESERVED and request.source is Source.CART:
            self._empty_cart(caller)
        return self._placement_answer(placed, replayed=False)

    @staticmethod
    def _placement_answer(order: Order, *, replayed: bool) -> Answer:
        if order.status is OrderStatus.REJECTED:
            raise Rejected(order, replayed)
        return Answer(order, 202 if order.status is OrderStatus.PENDING else 201, replayed)

    def _price(self, caller: Caller, request: PlaceRequest) -> list[OrderLine]:
        if request.source is Source.CART:
            return self._price_cart(caller)
        with business_rules():
            wanted = domain.merge_quantities(request.items)
        lines = []
        for product_id, quantity in wanted:
            product = self.catalog.get_product(product_id)
            if product is None:
                raise Unprocessable(f"product {product_id} does not exist",
                                    kind="unknown-product", product_id=product_id)
            if not product.active:
                raise Unprocessable(f"product {product_id} is not for sale",
                                    kind="product-not-for-sale", product_id=product_id)
            lines.append(OrderLine(product.id, product.sku, product.name, product.price,
                                   product.currency, quantity))
        return lines

    def _price_cart(self, caller: Caller) -> list[OrderLine]:
        if not caller.authorization:
            raise Forbidden("ordering the cart needs the caller's own access token")
        snapshot = self.cart.get_cart(caller.authorization, caller.principal.sub)
        if snapshot.pricing != "current":
            raise ServiceUnavailable(
                "the cart could not refresh its prices from the catalog; retry later",
                kind="upstream-unavailable",
            )
        if not snapshot.items:
            raise Unprocessable("your cart is empty", kind="empty-cart")
        gone = [line.product_id for line in snapshot.items if line.availability == "unavailable"]
        if gone:
            raise Unprocessable(
                f"product {gone[0]} in your cart is no longer for sale; remove it first",
                kind="product-not-for-sale", product_id=gone[0], product_ids=gone,
            )
        with business_rules():
            return [
                OrderLine(line.product_id, line.sku, line.name, line.unit_price, line.currency,
                          line.quantity)
                for line in snapshot.items
            ]

    def _empty_cart(self, caller: Caller) -> None:
        """Best effort: the order is placed whatever the cart answers."""
        if not caller.authorization:
            return
        try:
            self.cart.clear_cart(caller.authorization, caller.principal.sub)
        except Exception as exc:  # never fatal: the order stands
            log.warning("could not empty the cart of %s after the order: %s",
                        caller.principal.sub, exc)

    # -- the steps (each safe to repeat) -------------------------------------------------
    @step_span("reserve")
    def _drive_reservation(self, order_id: str) -> Order:
        """Ask the catalog to hold a pending order's stock and record its answer."""
        order = self._load(order_id)
        if order.status is not OrderStatus.PENDING:
            return order
        key = domain.idempotency_key(order.id, "reserve")
        try:
            result = self.catalog.reserve(order.id, order.reservation_items(), key)
        except DependencyUnavailable as exc:
            log.warning("order %s stays pending: %s", order.id, exc.detail or exc)
            return order
        now = self.clock()

        if result.outcome is ReserveOutcome.HELD:
            def held(o: Order) -> bool:
                if o.status is OrderStatus.PENDING:
                    o.mark_reserved(now)
                    return False
                if o.status is OrderStatus.CANCELLED:  # cancelled meanwhile: give it back
                    o.record("release", FollowUp.PENDING, now)
                    return True
                return False

            order, give_back = self._change(order.id, held)
            if give_back:
                order = self._drive_release(order.id)
            else:
                log.info("order %s reserved", order.id)
            return order

        code = (RejectionCode.INSUFFICIENT_STOCK if result.outcome is ReserveOutcome.SHORTAGE
                else RejectionCode.PRODUCT_UNAVAILABLE)

        def rejected(o: Order) -> None:
            if o.status is OrderStatus.PENDING:
                o.reject(code, result.detail, now, result.shortages or None)

        order, _ = self._change(order.id, rejected)
        log.info("order %s rejected: %s", order.id, result.detail)
        return order

    def _drive_release(self, order_id: str) -> Order:
        """Give a cancelled order's held stock back and record it."""
        return self._drive_stock(order_id, "release")

    def _drive_stock(self, order_id: str, step: str) -> Order:
        """``release`` (held stock) or ``return`` (committed stock) of a cancelled order:
        one keyed catalog call, and how it went recorded on the order."""
        order = self._load(order_id)
        state = order.release_status if step == "release" else order.stock_returned
        if order.status is not OrderStatus.CANCELLED or state not in OPEN:
            return order
        call = self.catalog.release if step == "release" else self.catalog.return_stock
        try:
            result = call(order.id, domain.idempotency_key(order.id, step))
        except DependencyUnavailable as exc:
            log.warning("stock of cancelled order %s: %s not done yet: %s", order.id, step,
                        exc.detail or exc)
            outcome = FollowUp.PENDING_RETRY
        else:
            if result.outcome is TransitionOutcome.CONFLICT:
                log.error("catalog refused the %s of order %s's stock: %s", step, order.id,
                          result.detail)
                outcome = FollowUp.FAILED
            else:  # done now or before (or, for a release, nothing was held)
                outcome = FollowUp.DONE
        now = self.clock()

        def record(o: Order) -> None:
            if step == "release" and o.release_status in OPEN:
                o.record("release", outcome, now)
            elif step == "return" and o.stock_returned in OPEN:
                o.record_return(outcome, now)

        order, _ = self._change(order.id, record)
        return order

    def _drive_confirmation(self, order_id: str) -> Order:
        """Commit a confirming order's reservation, confirm it, then the follow-ups.

        Raises :class:`DependencyUnavailable` when the catalog cannot be reached (the
        order stays confirming; repeating is safe) and 409 when the catalog no longer
        holds the stock.
        """
        order = self._load(order_id)
        if not order.confirming:
            return self._drive_follow_ups(order.id) if order.status is OrderStatus.CONFIRMED \
                else order
        result = self.catalog.commit(order.id, domain.idempotency_key(order.id, "commit"))
        now = self.clock()
        if result.outcome is not TransitionOutcome.DONE:
            log.error("catalog refused to commit the stock of order %s: %s %s", order.id,
                      result.outcome, result.detail)
            self._change(order.id, lambda o: o.abandon_confirmation(now))
            raise Conflict(
                f"the catalog no longer holds the stock of order {order.id}",
                kind="reservation-not-held",
            )

        def confirm(o: Order) -> None:
            if o.confirming:
                o.confirm(now)

        order, _ = self._change(order.id, confirm)
        log.info("order %s confirmed with payment %s", order.id, order.payment_id)
        return self._drive_follow_ups(order.id)

    def _drive_follow_ups(self, order_id: str) -> Order:
        """The follow-ups of a confirmation (loyalty points, the confirmation message) are
        the participants' own: they act on ``orders.OrderConfirmed`` and their replies
        close ``loyalty_status`` / ``notification_status`` (:mod:`.messaging`)."""
        return self._load(order_id)

    # -- cancelling ----------------------------------------------------------------------
    def cancel(self, caller: Caller, order_id: str, key: str) -> Answer:
        """Cancel (intent stored first), then release the stock; 200 also when it was."""
        principal = caller.principal
        scope = idempotency_scope("cancel_order", principal.sub)
        request = {"order_id": order_id}
        fp = fingerprint(request)
        try:
            with business_rules(), self.uow.write() as repo:
                stored = repo.idempotency.lookup(scope, key, fp)
                order = visible(principal, repo.get(order_id, lock=stored is None), _customer,
                                f"order {order_id} does not exist")
                replayed = stored is not None
                if not replayed:
                    if order.cancel(self.clock()):
                        repo.save(order)
                        log.info("order %s cancelled by %s", order.id, principal.sub)
                    repo.idempotency.claim(scope, key, fp)
                    repo.idempotency.complete(scope, key, 200, {"order_id": order.id})
        except WriteConflict:  # the same key, concurrently: answer as the winner did
            if self._replayed(scope, key, request) is None:
                raise Conflict("a concurrent request changed the order; retry") from None
            replayed = True
        return Answer(self._drive_release(order_id), 200, replayed)

    # -- confirming ----------------------------------------------------------------------
    def confirm(self, caller: Caller, order_id: str, payment_id: str, key: str) -> Answer:
        """Check the payment, then commit the stock, capture an authorisation and confirm
        (the checkout saga from its commit step)."""
        principal = caller.principal
        scope = idempotency_scope("confirm_order", principal.sub)
        request = {"order_id": order_id, "payment_id": payment_id}
        replayed = self._replayed(scope, key, request) is not None
        order = self._visible(principal, order_id)
        if order.status is OrderStatus.PENDING:  # perhaps the catalog is back by now
            order = self._drive_reservation(order.id)

        if order.status is OrderStatus.CONFIRMED:
            if order.payment_id != payment_id:
                raise Conflict(f"order {order.id} is already confirmed with another payment",
                               kind="invalid-order-state")
            self._remember(scope, key, request, order.id)
            return Answer(self._drive_follow_ups(order.id), 200, replayed)
        if order.status is not OrderStatus.RESERVED:
            detail = (f"order {order.id} is not reserved yet; retry once it is"
                      if order.status is OrderStatus.PENDING
                      else f"a {order.status} order cannot be confirmed")
            raise Conflict(detail, kind="invalid-order-state", order_status=order.status.value)
        if order.payment_id not in (None, payment_id):
            raise Conflict(f"order {order.id} is being confirmed with another payment",
                           kind="invalid-order-state")

        if order.payment_id is None:
            payment = self.payments.get_payment(payment_id)
            check_payment(order, payment, payment_id)
            assert payment is not None
            email = caller.email if principal.sub == order.customer_id else None
            now = self.clock()

            def start(o: Order) -> None:
                o.record_payment(payment_id, payment.status, now)
                o.start_confirmation(payment_id, now)
                if email and not o.customer_email:
                    o.customer_email = email

            self._change(order.id, start)
        try:
            order = self._drive_confirmation(order.id)
        except DependencyUnavailable as exc:
            raise ServiceUnavailable(
                f"the catalog could not commit the stock of order {order.id} ({exc.detail}); "
                "the payment was checked: retry with the same Idempotency-Key (the service "
                "also finishes the confirmation by itself once the catalog is back)",
                kind="upstream-unavailable", order_id=order.id,
            ) from exc
        self._remember(scope, key, request, order.id)
        return Answer(order, 200, replayed)

    # -- recovery ------------------------------------------------------------------------
    def resume_pending(self, now: datetime | None = None,
                       only: list[str] | None = None) -> dict[str, int]:
        """Finish the unfinished work of every order last changed at or before ``now``
        (``only``: of these orders).

        Pending reservations are asked again (same key: never reserved twice), started
        confirmations committed, releases of cancelled orders and the follow-ups of
        confirmed orders retried. Returns counts of what each order became (for logs and
        tests). Safe to run concurrently with requests and with itself.
        """
        before = (now or self.clock()).astimezone(UTC)
        if only is None:
            with self.uow.read() as repo:
                ids = repo.needing_recovery(before, self.recovery_batch)
        else:
            ids = only
        report: Counter[str] = Counter()
        for order_id in ids:
            try:
                order = self._load(order_id)
                if order.status is OrderStatus.PENDING:
                    order = self._drive_reservation(order_id)
                    report[f"reservation:{order.status}"] += 1
                elif order.confirming or order.status is OrderStatus.CONFIRMED:
                    order = self._drive_confirmation(order_id)
                    report[f"confirmation:{order.status}"] += 1
                elif order.status is OrderStatus.CANCELLED:
                    order = self._drive_release(order_id)
                    report[f"release:{order.release_status}"] += 1
            except DependencyUnavailable as exc:
                report["unavailable"] += 1
                log.warning("recovery of order %s postponed: %s", order_id, exc.detail or exc)
            except Problem as exc:
                report["refused"] += 1
                log.warning("recovery of order %s refused: %s", order_id, exc)
            except Exception:  # one bad order must not stop the others
                report["errors"] += 1
                log.exception("recovery of order %s failed", order_id)
        if ids:
            log.info("recovery looked at %d orders: %s", len(ids), dict(report))
        return dict(report)


def check_payment(order: Order, payment: Payment | None, payment_id: str) -> None:
    """The payment must exist, be this order's, match its total and be usable."""
    if payment is None:
        raise Unprocessable(f"payment {payment_id} does not exist", kind="unknown-payment")
    if payment.order_id != order.id:
        raise Unprocessable(f"payment {payment_id} belongs to another order",
                            kind="payment-mismatch")
    if payment.customer_id != order.customer_id:
        raise Unprocessable(f"payment {payment_id} belongs to another customer",
                            kind="payment-mismatch")
    if (payment.amount, payment.currency) != (order.total, order.currency):
        raise Unprocessable(
            f"payment {payment_id} is for {payment.amount} {payment.currency}, the order "
            f"total is {order.total} {order.currency}",
            kind="payment-mismatch",
            expected={"amount": order.total, "currency": order.currency},
            actual={"amount": payment.amount, "currency": payment.currency},
        )
    if payment.status not in USABLE_PAYMENT_STATES:
        raise Conflict(
            f"payment {payment_id} is {payment.status}; it must be authorized or captured",
            kind="payment-not-usable", payment_status=payment.status,
        )
