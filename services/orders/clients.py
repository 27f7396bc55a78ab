"""The orders service's HTTP adapters for its ports (:mod:`.ports`).

Each adapter calls another API through :class:`charter.http.HttpClient` (timeouts,
correlation id, bounded retries — keyed POSTs are retried too, they cannot act twice):

* catalog — the shared typed client :class:`services.catalog_client.HttpCatalogClient`
  (product reads with an internal ``catalog:read`` token, reservations with
  ``catalog:reserve`` and an ``Idempotency-Key`` derived from the order id);
* cart — ``GET /v1/cart`` and ``DELETE /v1/cart`` **with the customer's own bearer
  token** (zero trust: the cart only ever shows a user their own cart);
* payments — ``GET /v1/payments/{payment_id}`` (internal token ``payments:read``);
* exchange — ``GET /v1/convert`` (internal token ``exchange:read``): a 503 ``NoRates``
  answer (no rate, not even a last known one) is a refusal, not an outage;

Anything that prevents an answer raises the port's ``…Unavailable`` (503).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from charter.http import DEFAULT_TIMEOUT, HttpClient, TokenSource, problem_kind
from charter.problems import ServiceUnavailable

from .ports import (
    CartForbidden,
    CartLine,
    CartPort,
    CartSnapshot,
    CartUnavailable,
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
)

__all__ = ["HttpCart", "HttpExchange", "HttpPayments"]

log = logging.getLogger(__name__)

JSON_HEADERS = {"Accept": "application/json"}


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
        raise error(str(exc) or f"the {what} is unavailable") from exc


def _unexpected(
    response: httpx.Response, error: type[DependencyUnavailable], what: str, action: str
) -> DependencyUnavailable:
    level = logging.ERROR if response.status_code in (400, 401, 403) else logging.WARNING
    log.log(level, "%s: %s answered %s", what, action, response.status_code)
    return error(f"the {what} answered {response.status_code}")


class HttpCart(CartPort):
    """The cart API, called with the customer's own ``Authorization`` header."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = HttpClient(self.base_url, name="cart", timeout=timeout, retries=retries)

    def _request(self, method: str, authorization: str) -> httpx.Response:
        response = _call(self.http, CartUnavailable, "cart", method, "/v1/cart",
                         headers={**JSON_HEADERS, "Authorization": authorization})
        if response.status_code in (401, 403) and problem_kind(response) in (
                "unauthorized", "insufficient-scope", "forbidden"):
            raise CartForbidden(
                "the cart refused your access token: placing an order from the cart needs "
                "the scopes cart:read and cart:write",
                kind="cart-not-accessible",
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


class HttpPayments(PaymentsPort, CheckoutPaymentsPort):
    """The payments API: reads (v1 confirmation) and the v2 checkout's payment steps."""

    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.http = HttpClient(base_url.rstrip("/"), name="payments", timeout=timeout,
                               retries=retries, token=token)

    def get_payment(self, payment_id: str) -> Payment | None:
        response = _call(self.http, PaymentsUnavailable, "payments service", "GET",
                         f"/v1/payments/{payment_id}", headers=JSON_HEADERS)
        if response.status_code == 404:  # one kind only (not-found): the status decides
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

    @staticmethod
    def _payment(body: Any) -> Payment:
        try:
            return Payment(id=str(body["id"]), order_id=str(body["order_id"]),
                           customer_id=str(body["customer_id"]), amount=int(body["amount"]),
                           currency=str(body["currency"]), status=str(body["status"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PaymentsUnavailable("the payments service sent an invalid payment") from exc

    def _step(self, action: str, path: str, key: str, body: dict[str, Any] | None,
              ok: int) -> PaymentOutcome:
        """One keyed payment step: the payment, or the refusal (402/409/422), else 503."""
        response = _call(self.http, PaymentsUnavailable, "payments service", "POST", path,
                         json=body, headers={**JSON_HEADERS, "Idempotency-Key": key},
                         retry=True)
        status = response.status_code
        if status == ok:
            doc = _json(response, PaymentsUnavailable, "payments service")
            return PaymentOutcome(self._payment(doc.get("payment", doc)))
        if status in (402, 409, 422):
            doc = _json(response, PaymentsUnavailable, "payments service")
            payment = self._payment(doc["payment"]) if isinstance(doc.get("payment"), dict) \
                else None
            reason = str(doc.get("decline_code") or doc.get("detail") or doc.get("title")
                         or status)
            log.warning("payments refused to %s: %s %s", action, status, reason)
            return PaymentOutcome(payment, reason[:200])
        raise _unexpected(response, PaymentsUnavailable, "payments service", action)

    def authorize(self, order_id: str, customer_id: str, amount: int, currency: str,
                  method: str, key: str) -> PaymentOutcome:
        body = {"order_id": order_id, "customer_id": customer_id, "amount": amount,
                "currency": currency, "method": method, "description": f"Order {order_id}"}
        return self._step("authorize", "/v1/payments", key, body, 201)

    def capture(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._step("capture", f"/v1/payments/{payment_id}/capture", key, {}, 200)

    def void(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._step("void", f"/v1/payments/{payment_id}/void", key, None, 200)

    def refund(self, payment_id: str, key: str, reason: str) -> PaymentOutcome:
        return self._step("refund", f"/v1/payments/{payment_id}/refunds", key,
                          {"reason": reason[:200]}, 201)

    def close(self) -> None:
        self.http.close()


_RATE = re.compile(r"[0-9]{1,21}\.[0-9]{10}")  # the exchange spec's DecimalRate


def _conversion(body: Any, target: str) -> Conversion:
    """A 200 answer's conversion; the fields must have the spec's types — nothing is
    coerced (``5000.5`` is no amount of minor units, ``"false"`` no flag)."""
    amount = body.get("converted_amount") if isinstance(body, dict) else None
    rate = body.get("rate") if isinstance(body, dict) else None
    stale = body.get("stale") if isinstance(body, dict) else None
    if (type(amount) is not int or amount < 0 or not isinstance(rate, str)
            or not _RATE.fullmatch(rate) or not isinstance(stale, bool)):
        raise ExchangeUnavailable("the exchange service sent an invalid conversion")
    return Conversion(amount, target, rate, stale)


class HttpExchange(ExchangePort):
    """The exchange API's conversion (the checkout settles orders in EUR)."""

    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 1) -> None:
        self.http = HttpClient(base_url.rstrip("/"), name="exchange", timeout=timeout,
                               retries=retries, token=token)

    def convert(self, amount: int, source: str, target: str) -> ConversionOutcome:
        response = _call(self.http, ExchangeUnavailable, "exchange service", "GET",
                         "/v1/convert", params={"from": source, "to": target,
                                                "amount": str(amount)},
                         headers=JSON_HEADERS)
        status = response.status_code
        if status == 200:
            body = _json(response, ExchangeUnavailable, "exchange service")
            return ConversionOutcome(_conversion(body, target))
        kind = problem_kind(response)
        if (status, kind) in ((404, "unknown-currency"), (503, "no-exchange-rates")):
            log.warning("exchange refused to convert %s %s to %s: %s %s", amount, source,
                        target, status, kind)
            return ConversionOutcome(None, f"no rate from {source} to {target} ({kind})")
        raise _unexpected(response, ExchangeUnavailable, "exchange service", "convert")

    def close(self) -> None:
        self.http.close()
