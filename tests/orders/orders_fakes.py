"""In-memory fakes of the services orders depends on (its ports), for tests.

Each fake follows the real API's rules that orders relies on (idempotency keys, natural
keys); ``down`` makes every call fail, ``fail_next`` only that many calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.orders.ports import (
    CartForbidden,
    CartLine,
    CartPort,
    CartSnapshot,
    CartUnavailable,
    CatalogPort,
    CatalogUnavailable,
    CheckoutPaymentsPort,
    Conversion,
    ConversionOutcome,
    DependencyUnavailable,
    ExchangePort,
    ExchangeUnavailable,
    Payment,
    PaymentOutcome,
    PaymentsPort,
    PaymentsUnavailable,
    Product,
    ReserveOutcome,
    ReserveResult,
    TransitionOutcome,
    TransitionResult,
)


class _Switch:
    """``down`` makes every call fail; ``fail_next`` fails only that many calls."""

    unavailable: type[DependencyUnavailable] = DependencyUnavailable

    def __init__(self) -> None:
        self.down = False
        self.fail_next = 0
        self.lock = threading.RLock()

    def close(self) -> None:
        """Nothing to release."""
        return None

    def _check(self) -> None:
        if self.down:
            raise self.unavailable("unavailable (fake)")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise self.unavailable("unavailable (fake, one-off)")


@dataclass
class FakeReservation:
    order_id: str
    items: list[tuple[int, int]]
    status: str = "held"


class InMemoryCatalog(_Switch, CatalogPort):
    """Products, stock and reservations in dicts, with the catalog's idempotency rules.

    ``calls`` counts requests per ``(operation, key)``; ``effects`` counts the changes
    really made per key (a replayed key changes nothing). ``reservations_down`` fails
    only the reservation calls; ``lose_next_answer`` applies the next reservation change
    and then fails as if the answer were lost on the way back.
    """

    unavailable = CatalogUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.products: dict[int, Product] = {}
        self.on_hand: dict[int, int] = {}
        self.reserved: dict[int, int] = {}
        self.reservations: dict[str, FakeReservation] = {}
        self.answers: dict[tuple[str, str], Any] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.effects: Counter[tuple[str, str]] = Counter()
        self.reservations_down = False
        self.lose_next_answer = False

    def put(self, product_id: int, *, price: int = 1000, on_hand: int = 100,
            currency: str = "EUR", active: bool = True, name: str | None = None,
            sku: str | None = None) -> Product:
        product = Product(product_id, sku or f"SKU-{product_id}", name or f"Product {product_id}",
                          price, currency, active)
        self.products[product_id] = product
        self.on_hand[product_id] = on_hand
        self.reserved.setdefault(product_id, 0)
        return product

    def available(self, product_id: int) -> int:
        return self.on_hand.get(product_id, 0) - self.reserved.get(product_id, 0)

    def get_product(self, product_id: int) -> Product | None:
        with self.lock:
            self._check()
            return self.products.get(product_id)

    def _keyed(self, op: str, key: str) -> Any:
        self.calls[(op, key)] += 1
        self._check()
        if self.reservations_down:
            raise CatalogUnavailable("reservations unavailable (fake)")
        return self.answers.get((op, key))

    def _answer(self, op: str, key: str, result: Any, changed: bool) -> Any:
        if changed:
            self.answers[(op, key)] = result
            self.effects[(op, key)] += 1
            if self.lose_next_answer:
                self.lose_next_answer = False
                raise CatalogUnavailable("answer lost (fake)")
        return result

    def reserve(self, order_id: str, items: Sequence[tuple[int, int]], key: str) -> ReserveResult:
        with self.lock:
            stored = self._keyed("reserve", key)
            if stored is not None:
                return replace(stored)
            unknown = sorted(pid for pid, _ in items
                             if pid not in self.products or not self.products[pid].active)
            if unknown:
                return ReserveResult(ReserveOutcome.REFUSED,
                                     f"product {unknown[0]} does not exist or is not for sale",
                                     product_ids=unknown)
            short = [{"product_id": pid, "requested": qty, "available": self.available(pid)}
                     for pid, qty in sorted(items) if qty > self.available(pid)]
            if short:
                return ReserveResult(ReserveOutcome.SHORTAGE, "insufficient stock",
                                     shortages=short)
            if order_id in self.reservations:
                raise CatalogUnavailable("reservation exists under another key (fake)")
            for pid, qty in items:
                self.reserved[pid] += qty
            self.reservations[order_id] = FakeReservation(order_id, list(items))
            return self._answer("reserve", key, ReserveResult(ReserveOutcome.HELD), True)

    def _transition(self, op: str, order_id: str, key: str, target: str) -> TransitionResult:
        with self.lock:
            stored = self._keyed(op, key)
            if stored is not None:
                return replace(stored)
            reservation = self.reservations.get(order_id)
            if reservation is None:
                return TransitionResult(TransitionOutcome.NOT_FOUND, "no reservation (fake)")
            if reservation.status not in ("held", target):
                return TransitionResult(TransitionOutcome.CONFLICT,
                                        f"reservation is {reservation.status} (fake)")
            changed = reservation.status == "held"
            if changed:
                for pid, qty in reservation.items:
                    self.reserved[pid] -= qty
                    if target == "committed":
                        self.on_hand[pid] -= qty
                reservation.status = target
            return self._answer(op, key, TransitionResult(TransitionOutcome.DONE), changed)

    def commit(self, order_id: str, key: str) -> TransitionResult:
        return self._transition("commit", order_id, key, "committed")

    def release(self, order_id: str, key: str) -> TransitionResult:
        return self._transition("release", order_id, key, "released")

    def return_stock(self, order_id: str, key: str) -> TransitionResult:
        """A committed reservation's quantities back on hand (keyed like the real one)."""
        with self.lock:
            stored = self._keyed("return", key)
            if stored is not None:
                return replace(stored)
            reservation = self.reservations.get(order_id)
            if reservation is None:
                return TransitionResult(TransitionOutcome.NOT_FOUND, "no reservation (fake)")
            if reservation.status not in ("committed", "returned"):
                return TransitionResult(TransitionOutcome.CONFLICT,
                                        f"reservation is {reservation.status} (fake)")
            changed = reservation.status == "committed"
            if changed:
                for pid, qty in reservation.items:
                    self.on_hand[pid] += qty
                reservation.status = "returned"
            return self._answer("return", key, TransitionResult(TransitionOutcome.DONE), changed)


class InMemoryExchange(_Switch, ExchangePort):
    """Rates to EUR by currency (``rates["USD"] = "0.9"``); a currency without one is
    refused like exchange's ``no-exchange-rates``; ``down`` makes it unreachable."""

    unavailable = ExchangeUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[str, str] = {"USD": "0.92"}
        self.calls: list[tuple[int, str, str]] = []

    def convert(self, amount: int, source: str, target: str) -> ConversionOutcome:
        with self.lock:
            self.calls.append((amount, source, target))
            self._check()
            rate = self.rates.get(source)
            if rate is None:
                return ConversionOutcome(None, "no-exchange-rates")
            return ConversionOutcome(Conversion(round(amount * float(rate)), target, rate))


class InMemoryCart(_Switch, CartPort):
    """Carts by user id; remembers which ``Authorization`` header each call carried."""

    unavailable = CartUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.carts: dict[str, CartSnapshot] = {}
        self.seen: list[tuple[str, str, str]] = []  # (operation, authorization, user_id)
        self.forbidden: set[str] = set()
        self.clear_down = False

    def put(self, user_id: str, lines: Sequence[CartLine], *, pricing: str = "current") -> None:
        currency = lines[0].currency if lines else None
        self.carts[user_id] = CartSnapshot(user_id, list(lines), currency, pricing)

    def get_cart(self, authorization: str, user_id: str) -> CartSnapshot:
        with self.lock:
            self.seen.append(("get", authorization, user_id))
            self._check()
            if user_id in self.forbidden:
                raise CartForbidden("the cart refused your access token (fake)")
            return self.carts.get(user_id, CartSnapshot(user_id, [], None))

    def clear_cart(self, authorization: str, user_id: str) -> None:
        with self.lock:
            self.seen.append(("clear", authorization, user_id))
            self._check()
            if self.clear_down:
                raise CartUnavailable("cart unavailable (fake)")
            self.carts.pop(user_id, None)


class InMemoryPayments(_Switch, PaymentsPort, CheckoutPaymentsPort):
    unavailable = PaymentsUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, Payment] = {}
        self.calls: list[str] = []
        self.moves: dict[str, PaymentOutcome] = {}

    def put(self, payment: Payment) -> Payment:
        self.payments[payment.id] = payment
        return payment

    def get_payment(self, payment_id: str) -> Payment | None:
        with self.lock:
            self.calls.append(payment_id)
            self._check()
            return self.payments.get(payment_id)

    # the checkout's steps on the client's payment (v1 confirm captures an authorisation)
    def _move(self, payment_id: str, allowed: str, target: str, key: str) -> PaymentOutcome:
        with self.lock:
            self._check()
            done = self.moves.get(key)
            if done is not None:
                return done
            payment = self.payments[payment_id]
            if payment.status not in (allowed, target):
                return PaymentOutcome(payment, f"payment is {payment.status}")
            moved = replace(payment, status=target)
            self.payments[payment_id] = moved
            self.moves[key] = PaymentOutcome(moved)
            return self.moves[key]

    def authorize(self, order_id: str, customer_id: str, amount: int, currency: str,
                  method: str, key: str) -> PaymentOutcome:
        raise AssertionError("v1 orders are paid by the client, never authorised by orders")

    def capture(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._move(payment_id, "authorized", "captured", key)

    def void(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._move(payment_id, "authorized", "voided", key)

    def refund(self, payment_id: str, key: str, reason: str) -> PaymentOutcome:
        return self._move(payment_id, "captured", "refunded", key)


def fakes() -> Mapping[str, Any]:
    """A fresh set of in-memory dependencies, by the names ``create_app`` takes."""
    return {
        "catalog": InMemoryCatalog(),
        "cart": InMemoryCart(),
        "payments": InMemoryPayments(),
    }
