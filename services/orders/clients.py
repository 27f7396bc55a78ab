"""The orders service's view of the other services: ports, HTTP adapters, in-memory fakes.

The use cases only know the ports (:class:`CatalogPort`, :class:`CartPort`,
:class:`PaymentsPort`, :class:`LoyaltyPort`, :class:`NotificationsPort`). The HTTP
adapters call the other APIs through :class:`charter.http.HttpClient` (timeouts,
correlation id, bounded retries — keyed POSTs are retried too, they cannot act twice):

* catalog — ``GET /v1/products/{id}`` (internal token ``catalog:read``) and
  ``POST /v1/reservations``, ``…/{order_id}/commit``, ``…/{order_id}/release`` (internal
  token ``catalog:reserve``, ``Idempotency-Key`` derived from the order id);
* cart — ``GET /v1/cart`` and ``DELETE /v1/cart`` **with the customer's own bearer
  token** (zero trust: the cart only ever shows a user their own cart);
* payments — ``GET /v1/payments/{payment_id}`` (internal token ``payments:read``);
* loyalty — ``POST /v1/awards`` (internal token ``loyalty:write``; idempotent by order);
* notifications — ``POST /v1/notifications`` (internal token ``notifications:write``,
  ``Idempotency-Key``).

"Not found" and business refusals are answers (return values). Anything that prevents
an answer — the service is down, slow, answers 5xx or garbage, refuses our token, or no
token can be had — raises :class:`DependencyUnavailable` (503).
"""

from __future__ import annotations

import abc
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import httpx

from charter import config
from charter.http import HttpClient, TokenSource
from charter.problems import Forbidden, ServiceUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
JSON_HEADERS = {"Accept": "application/json"}


class DependencyUnavailable(ServiceUnavailable):
    """Another service could not answer (unreachable, timed out, failed, odd answer)."""

    title = "Service Unavailable"


class CatalogUnavailable(DependencyUnavailable):
    """The catalog could not answer."""


class CartUnavailable(DependencyUnavailable):
    """The cart could not answer."""


class PaymentsUnavailable(DependencyUnavailable):
    """The payments service could not answer."""


class LoyaltyUnavailable(DependencyUnavailable):
    """The loyalty service could not answer."""


class NotificationsUnavailable(DependencyUnavailable):
    """The notifications service could not answer."""


class CartForbidden(Forbidden):
    """The cart refused the caller's own token (e.g. it lacks ``cart:read``)."""


def dependency_timeout(name: str) -> float:
    """``<NAME>_TIMEOUT`` seconds (default 2) for calls to service ``name``."""
    var = f"{name.upper()}_TIMEOUT"
    raw = config.env(var)
    try:
        value = float(raw) if raw is not None else DEFAULT_TIMEOUT
    except ValueError as exc:
        raise config.ConfigError(f"{var} must be a number of seconds") from exc
    if value <= 0:
        raise config.ConfigError(f"{var} must be positive")
    return value


# -- answers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """What an order needs to know about a catalog product."""

    id: int
    sku: str
    name: str
    price: int
    currency: str
    active: bool


class ReserveOutcome(StrEnum):
    HELD = "held"  # the catalog holds every item for the order
    SHORTAGE = "shortage"  # at least one product is short (nothing held)
    REFUSED = "refused"  # a product is unknown or not for sale (nothing held)


@dataclass(frozen=True)
class ReserveResult:
    outcome: ReserveOutcome
    detail: str = ""
    shortages: list[dict[str, int]] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)


class TransitionOutcome(StrEnum):
    DONE = "done"  # committed / released (now or earlier)
    NOT_FOUND = "not_found"  # the catalog holds no reservation for the order
    CONFLICT = "conflict"  # the reservation is in the other final state


@dataclass(frozen=True)
class TransitionResult:
    outcome: TransitionOutcome
    detail: str = ""


@dataclass(frozen=True)
class CartLine:
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
    id: str
    order_id: str
    customer_id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True)
class Notification:
    recipient: str
    subject: str
    body: str
    order_id: str
    customer_id: str
    template: str = "order-confirmed"


class Delivery(StrEnum):
    DONE = "done"  # accepted (now or earlier)
    REFUSED = "refused"  # refused for good (4xx); retrying would not help


# -- ports ------------------------------------------------------------------------------
class CatalogPort(abc.ABC):
    @abc.abstractmethod
    def get_product(self, product_id: int) -> Product | None:
        """The product, ``None`` if the catalog does not know it."""

    @abc.abstractmethod
    def reserve(self, order_id: str, items: Sequence[tuple[int, int]], key: str) -> ReserveResult:
        """Hold every item for the order, or none."""

    @abc.abstractmethod
    def commit(self, order_id: str, key: str) -> TransitionResult:
        """Commit the order's reservation."""

    @abc.abstractmethod
    def release(self, order_id: str, key: str) -> TransitionResult:
        """Release the order's reservation."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


class CartPort(abc.ABC):
    @abc.abstractmethod
    def get_cart(self, authorization: str, user_id: str) -> CartSnapshot:
        """The cart of the user whose ``Authorization`` header is forwarded."""

    @abc.abstractmethod
    def clear_cart(self, authorization: str, user_id: str) -> None:
        """Empty that cart."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


class PaymentsPort(abc.ABC):
    @abc.abstractmethod
    def get_payment(self, payment_id: str) -> Payment | None:
        """The payment, ``None`` if it does not exist."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


class LoyaltyPort(abc.ABC):
    @abc.abstractmethod
    def award(self, customer_id: str, order_id: str, amount: int, currency: str) -> Delivery:
        """Award the order's points (idempotent by order)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


class NotificationsPort(abc.ABC):
    @abc.abstractmethod
    def send(self, notification: Notification, key: str) -> Delivery:
        """Send one message (idempotent by ``key``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections)."""


# -- HTTP adapters ----------------------------------------------------------------------
def _json(response: httpx.Response, error: type[DependencyUnavailable], what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise error(f"the {what} sent an invalid answer") from exc


def _call(
    http: HttpClient,
    error: type[DependencyUnavailable],
    what: str,
    method: str,
    path: str,
    **kwargs: Any,
) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except ServiceUnavailable as exc:
        raise error(exc.detail or f"the {what} is unavailable") from exc


def _unexpected(
    response: httpx.Response, error: type[DependencyUnavailable], what: str, action: str
) -> DependencyUnavailable:
    level = logging.ERROR if response.status_code in (400, 401, 403) else logging.WARNING
    log.log(level, "%s: %s answered %s", what, action, response.status_code)
    return error(f"the {what} answered {response.status_code}")


class HttpCatalog(CatalogPort):
    """The catalog API; product reads and reservations use separate token sources."""

    def __init__(
        self,
        base_url: str,
        read_token: TokenSource,
        reserve_token: TokenSource,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.reads = HttpClient(
            self.base_url, name="catalog", timeout=timeout, retries=retries, token=read_token
        )
        self.writes = HttpClient(
            self.base_url, name="catalog", timeout=timeout, retries=retries, token=reserve_token,
            client=self.reads.client,
        )

    def get_product(self, product_id: int) -> Product | None:
        response = _call(self.reads, CatalogUnavailable, "catalog", "GET",
                         f"/v1/products/{int(product_id)}", headers=JSON_HEADERS)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unexpected(response, CatalogUnavailable, "catalog", "GET product")
        body = _json(response, CatalogUnavailable, "catalog")
        try:
            return Product(
                id=int(body["id"]),
                sku=str(body["sku"]),
                name=str(body["name"]),
                price=int(body["price"]),
                currency=str(body["currency"]),
                active=bool(body.get("active", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable("the catalog sent an invalid product") from exc

    def _post(self, path: str, key: str, body: Any = None) -> httpx.Response:
        headers = {**JSON_HEADERS, "Idempotency-Key": key}
        kwargs: dict[str, Any] = {"headers": headers, "retry": True}
        if body is not None:
            kwargs["json"] = body
        return _call(self.writes, CatalogUnavailable, "catalog", "POST", path, **kwargs)

    def reserve(self, order_id: str, items: Sequence[tuple[int, int]], key: str) -> ReserveResult:
        body = {
            "order_id": order_id,
            "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
        }
        response = self._post("/v1/reservations", key, body)
        status = response.status_code
        if status in (200, 201):
            return ReserveResult(ReserveOutcome.HELD)
        if status == 409:
            problem = _json(response, CatalogUnavailable, "catalog")
            problem = problem if isinstance(problem, dict) else {}
            shortages = problem.get("shortages")
            if isinstance(shortages, list) and shortages:
                try:
                    short = [
                        {
                            "product_id": int(s["product_id"]),
                            "requested": int(s["requested"]),
                            "available": int(s["available"]),
                        }
                        for s in shortages
                    ]
                except (KeyError, TypeError, ValueError) as exc:
                    raise CatalogUnavailable("the catalog sent invalid shortages") from exc
                detail = str(problem.get("detail") or "insufficient stock")
                return ReserveResult(ReserveOutcome.SHORTAGE, detail, shortages=short)
            if problem.get("title") == "Reservation exists":
                # Held under another key (a lost idempotency record): read its state.
                return self._existing(order_id)
            raise _unexpected(response, CatalogUnavailable, "catalog", "reserve (409)")
        if status == 422:
            problem = _json(response, CatalogUnavailable, "catalog")
            problem = problem if isinstance(problem, dict) else {}
            ids = problem.get("product_ids") or (
                [problem["product_id"]] if "product_id" in problem else []
            )
            if not ids:  # not a product refusal (e.g. key reused with another body)
                raise _unexpected(response, CatalogUnavailable, "catalog", "reserve (422)")
            try:
                product_ids = [int(i) for i in ids]
            except (TypeError, ValueError) as exc:
                raise CatalogUnavailable("the catalog sent invalid product ids") from exc
            detail = str(problem.get("detail") or "a product is not for sale")
            return ReserveResult(ReserveOutcome.REFUSED, detail, product_ids=product_ids)
        raise _unexpected(response, CatalogUnavailable, "catalog", "reserve")

    def _existing(self, order_id: str) -> ReserveResult:
        response = _call(self.writes, CatalogUnavailable, "catalog", "GET",
                         f"/v1/reservations/{order_id}", headers=JSON_HEADERS)
        if response.status_code == 200:
            body = _json(response, CatalogUnavailable, "catalog")
            if isinstance(body, dict) and body.get("status") == "held":
                return ReserveResult(ReserveOutcome.HELD)
        raise _unexpected(response, CatalogUnavailable, "catalog", "read reservation")

    def _transition(self, order_id: str, key: str, action: str) -> TransitionResult:
        response = self._post(f"/v1/reservations/{order_id}/{action}", key)
        status = response.status_code
        if status == 200:
            return TransitionResult(TransitionOutcome.DONE)
        if status in (404, 409):
            problem = _json(response, CatalogUnavailable, "catalog")
            detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
            if status == 409 and isinstance(problem, dict) and problem.get(
                "title"
            ) == "Request in progress":
                raise CatalogUnavailable("the catalog is still handling the same request")
            outcome = TransitionOutcome.NOT_FOUND if status == 404 else TransitionOutcome.CONFLICT
            return TransitionResult(outcome, detail)
        raise _unexpected(response, CatalogUnavailable, "catalog", action)

    def commit(self, order_id: str, key: str) -> TransitionResult:
        return self._transition(order_id, key, "commit")

    def release(self, order_id: str, key: str) -> TransitionResult:
        return self._transition(order_id, key, "release")

    def close(self) -> None:
        self.reads.close()


class HttpCart(CartPort):
    """The cart API, called with the customer's own ``Authorization`` header."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = HttpClient(self.base_url, name="cart", timeout=timeout, retries=retries)

    def _request(self, method: str, authorization: str) -> httpx.Response:
        response = _call(self.http, CartUnavailable, "cart", method, "/v1/cart",
                         headers={**JSON_HEADERS, "Authorization": authorization})
        if response.status_code in (401, 403):
            raise CartForbidden(
                "the cart refused your access token: placing an order from the cart needs "
                "the scopes cart:read and cart:write",
                title="Cart not accessible",
            )
        return response

    def get_cart(self, authorization: str, user_id: str) -> CartSnapshot:
        response = self._request("GET", authorization)
        if response.status_code != 200:
            raise _unexpected(response, CartUnavailable, "cart", "GET cart")
        body = _json(response, CartUnavailable, "cart")
        try:
            snapshot = CartSnapshot(
                user_id=str(body["user_id"]),
                items=[
                    CartLine(
                        product_id=int(i["product_id"]),
                        sku=str(i["sku"]),
                        name=str(i["name"]),
                        unit_price=int(i["unit_price"]),
                        currency=str(i["currency"]),
                        quantity=int(i["quantity"]),
                        availability=str(i.get("availability", "unknown")),
                    )
                    for i in body["items"]
                ],
                currency=body.get("currency"),
                pricing=str(body.get("pricing", "current")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CartUnavailable("the cart sent an invalid cart") from exc
        if snapshot.user_id != user_id:  # never order someone else's cart
            log.error("cart answered the cart of another user")
            raise CartUnavailable("the cart answered for another user")
        return snapshot

    def clear_cart(self, authorization: str, user_id: str) -> None:
        response = self._request("DELETE", authorization)
        if response.status_code not in (200, 204):
            raise _unexpected(response, CartUnavailable, "cart", "DELETE cart")

    def close(self) -> None:
        self.http.close()


class HttpPayments(PaymentsPort):
    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.http = HttpClient(base_url.rstrip("/"), name="payments", timeout=timeout,
                               retries=retries, token=token)

    def get_payment(self, payment_id: str) -> Payment | None:
        response = _call(self.http, PaymentsUnavailable, "payments service", "GET",
                         f"/v1/payments/{payment_id}", headers=JSON_HEADERS)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unexpected(response, PaymentsUnavailable, "payments service", "GET payment")
        body = _json(response, PaymentsUnavailable, "payments service")
        try:
            return Payment(
                id=str(body["id"]),
                order_id=str(body["order_id"]),
                customer_id=str(body["customer_id"]),
                amount=int(body["amount"]),
                currency=str(body["currency"]),
                status=str(body["status"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PaymentsUnavailable("the payments service sent an invalid payment") from exc

    def close(self) -> None:
        self.http.close()


def _delivery(response: httpx.Response, error: type[DependencyUnavailable], what: str,
              action: str, *, retry: frozenset[int] = frozenset(),
              refuse: frozenset[int] = frozenset()) -> Delivery:
    """2xx: done. A refusal that retrying cannot change (4xx, ``refuse``): refused (logged).
    Anything else (5xx, 401/403/408/429, ``retry``): :class:`DependencyUnavailable`."""
    status = response.status_code
    if 200 <= status < 300:
        return Delivery.DONE
    if status in refuse or (400 <= status < 500 and status not in retry
                            and status not in (401, 403, 408, 429)):
        log.error("%s refused %s: %s %s", what, action, status, response.text[:300])
        return Delivery.REFUSED
    raise _unexpected(response, error, what, action)


class HttpLoyalty(LoyaltyPort):
    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.http = HttpClient(base_url.rstrip("/"), name="loyalty", timeout=timeout,
                               retries=retries, token=token)

    def award(self, customer_id: str, order_id: str, amount: int, currency: str) -> Delivery:
        body = {"customer_id": customer_id, "order_id": order_id, "amount": amount,
                "currency": currency}
        # Idempotent by order id (the loyalty API's natural key): safe to retry.
        response = _call(self.http, LoyaltyUnavailable, "loyalty service", "POST",
                         "/v1/awards", json=body, headers=JSON_HEADERS, retry=True)
        return _delivery(response, LoyaltyUnavailable, "loyalty service", "award")

    def close(self) -> None:
        self.http.close()


class HttpNotifications(NotificationsPort):
    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.http = HttpClient(base_url.rstrip("/"), name="notifications", timeout=timeout,
                               retries=retries, token=token)

    def send(self, notification: Notification, key: str) -> Delivery:
        body = {
            "channel": "email",
            "recipient": notification.recipient,
            "subject": notification.subject,
            "body": notification.body,
            "order_id": notification.order_id,
            "template": notification.template,
        }
        response = _call(self.http, NotificationsUnavailable, "notifications service", "POST",
                         "/v1/notifications", json=body,
                         headers={**JSON_HEADERS, "Idempotency-Key": key}, retry=True)
        # 409: the first request with this key is still being sent; 502: the provider
        # refused the message for good; 503: the provider is down (retry with the key).
        return _delivery(response, NotificationsUnavailable, "notifications service", "send",
                         retry=frozenset({409}), refuse=frozenset({502}))

    def close(self) -> None:
        self.http.close()


# -- in-memory fakes --------------------------------------------------------------------
class _Switch:
    """``down`` makes every call fail; ``fail_next`` fails only that many calls."""

    unavailable: type[DependencyUnavailable] = DependencyUnavailable

    def __init__(self) -> None:
        self.down = False
        self.fail_next = 0
        self.lock = threading.RLock()

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


class InMemoryPayments(_Switch, PaymentsPort):
    unavailable = PaymentsUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, Payment] = {}
        self.calls: list[str] = []

    def put(self, payment: Payment) -> Payment:
        self.payments[payment.id] = payment
        return payment

    def get_payment(self, payment_id: str) -> Payment | None:
        with self.lock:
            self.calls.append(payment_id)
            self._check()
            return self.payments.get(payment_id)


class InMemoryLoyalty(_Switch, LoyaltyPort):
    """Awards by order id (idempotent like the loyalty API); ``calls`` lists every call."""

    unavailable = LoyaltyUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.awards: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.refuse = False

    def award(self, customer_id: str, order_id: str, amount: int, currency: str) -> Delivery:
        with self.lock:
            request = {"customer_id": customer_id, "order_id": order_id, "amount": amount,
                       "currency": currency}
            self.calls.append(request)
            self._check()
            if self.refuse:
                return Delivery.REFUSED
            if order_id in self.awards and self.awards[order_id] != request:
                return Delivery.REFUSED
            self.awards[order_id] = request
            return Delivery.DONE


class InMemoryNotifications(_Switch, NotificationsPort):
    """Messages by idempotency key; ``calls`` lists every call."""

    unavailable = NotificationsUnavailable

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[str, Notification] = {}
        self.calls: list[tuple[str, Notification]] = []

    def send(self, notification: Notification, key: str) -> Delivery:
        with self.lock:
            self.calls.append((key, notification))
            self._check()
            self.sent.setdefault(key, notification)
            return Delivery.DONE


def fakes() -> Mapping[str, Any]:
    """A fresh set of in-memory dependencies, by the names ``create_app`` takes."""
    return {
        "catalog": InMemoryCatalog(),
        "cart": InMemoryCart(),
        "payments": InMemoryPayments(),
        "loyalty": InMemoryLoyalty(),
        "notifications": InMemoryNotifications(),
    }
