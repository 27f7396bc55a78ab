"""Every HTTP interaction a component makes with another, as a Pact consumer case.

A :class:`Case` declares one or more interactions on a :class:`pact.Pact` (provider state,
request as the adapter sends it, response with matchers for what the adapter reads) and
drives the component's **real** adapter against the Pact mock server's URL, asserting what
the adapter makes of the answer. The adapters are built the way the services' unit tests
build them (plain-HTTP URL, a fixed token source); everything else — paths, headers,
bodies, idempotency keys — is the adapter's own code.

Responses list only the fields the consumer reads: a provider may add fields freely.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pact import Pact, match

from services.catalog_client.client import HttpCatalogClient
from services.catalog_client.models import ReserveOutcome, TransitionOutcome
from services.orders.clients import (
    HttpCart,
    HttpExchange,
    HttpPayments,
)
from services.orders.ports import Conversion
from tests.contracts.pacts import BEARER_PATTERN, CUSTOMER, EXAMPLE_TOKEN, state

JSON = "application/json"
PROBLEM = "application/problem+json"
ORDER_ID = "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"
ORDER_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,64}"
PAYMENT_ID = "pay_3f2a9c0d1e4b4d8f9a6b7c5d4e3f2a1b"
KEY_PATTERN = r"^[A-Za-z0-9._:\-]{8,128}$"
CURRENCY = match.regex("EUR", regex=r"^[A-Z]{3}$")
PROBLEM_BASE = "https://portal.charter.test"


def problem_type(*slugs: str) -> Any:
    """The problem ``type`` URI of one of ``slugs`` (any base URL: each environment has its
    own; clients decide on the slug, charter.problem_types)."""
    return match.regex(f"{PROBLEM_BASE}/problems/{slugs[0]}",
                       regex=rf"^https?://\S+/problems/({'|'.join(slugs)})$")


@dataclass(frozen=True)
class Case:
    """One consumer test: ``define`` adds interactions, ``drive`` runs the adapter on a URL."""

    consumer: str
    provider: str
    name: str
    define: Callable[[Pact], None]
    drive: Callable[[str], None]

    @property
    def id(self) -> str:
        """``consumer-provider: name`` (the pytest id)."""
        return f"{self.consumer}-{self.provider}: {self.name}"


def token() -> str:
    """The consumer tests' token source (a fixed, JWT-shaped example)."""
    return EXAMPLE_TOKEN


def request(pact: Pact, description: str, given: tuple[str, dict[str, Any]], method: str,
            path: str, path_regex: str, *, key: bool = False) -> Any:
    """An interaction's request: path matched by ``path_regex``, bearer token by shape,
    ``Accept: application/json``, and an ``Idempotency-Key`` header when ``key``."""
    name, params = given
    interaction = (
        pact.upon_receiving(description)
        .given(name, params)
        .with_request(method, match.regex(path, regex=path_regex))
        .with_header("Authorization", match.regex(f"Bearer {EXAMPLE_TOKEN}",
                                                  regex=BEARER_PATTERN))
        .with_header("Accept", JSON)
    )
    if key:  # one key per interaction, as the adapters derive one per order and step
        example = f"order-{ORDER_ID}-" + re.sub(r"[^a-z0-9]+", "-", description.lower())
        interaction.with_header("Idempotency-Key",
                                match.regex(example[:128].rstrip("-"), regex=KEY_PATTERN))
    return interaction


def problem(interaction: Any, status: int, body: dict[str, Any] | None = None) -> None:
    """Answer ``status`` as problem+json, with ``body`` (matchers) when given."""
    interaction.will_respond_with(status).with_header(
        "Content-Type", match.regex(PROBLEM, regex=r"^application/problem\+json"))
    if body is not None:
        interaction.with_body(body, content_type=PROBLEM)


def ok(interaction: Any, status: int, body: dict[str, Any] | None = None) -> None:
    """Answer ``status`` (JSON ``body`` when given)."""
    interaction.will_respond_with(status)
    if body is not None:
        interaction.with_header("Content-Type", match.regex(JSON, regex=r"^application/json"))
        interaction.with_body(body, content_type=JSON)


# -- catalog (cart and orders) -------------------------------------------------------------

PRODUCT = {"product_id": 1, "sku": "COF-0001", "price": 2490, "currency": "EUR"}
PRODUCT_PATH = r"^/v1/products/[0-9]+$"
STOCK_PATH = r"^/v1/products/[0-9]+/stock$"
RESERVATION_PATH = rf"^/v1/reservations/{ORDER_ID_PATTERN}$"


def product_exists(on_hand: int = 5) -> tuple[str, dict[str, Any]]:
    return state("product {product_id} exists with {on_hand} in stock",
                 **PRODUCT, on_hand=on_hand)


def product_missing() -> tuple[str, dict[str, Any]]:
    return state("product {product_id} does not exist", product_id=999)


def reservation_state(status: str) -> tuple[str, dict[str, Any]]:
    return state("order {order_id} has a {status} reservation of {quantity} of product "
                 "{product_id}", order_id=ORDER_ID, status=status, quantity=2, **PRODUCT,
                 on_hand=5)


def no_reservation() -> tuple[str, dict[str, Any]]:
    return state("order {order_id} has no reservation", order_id=ORDER_ID)


def catalog_client(url: str, *, reserve: bool) -> HttpCatalogClient:
    return HttpCatalogClient(url, token, token if reserve else None, timeout=5.0)


def catalog_read_cases(consumer: str, *, stock: bool) -> list[Case]:
    """``GET /v1/products/{id}`` (and ``…/stock`` when ``stock``), found and not found."""
    reserve = consumer == "orders"

    def product_found(pact: Pact) -> None:
        ok(request(pact, "a request for a product", product_exists(), "GET", "/v1/products/1",
                   PRODUCT_PATH), 200, {
            "id": match.int(1), "sku": match.str("COF-0001"),
            "name": match.str("Espresso beans 1 kg"), "price": match.int(2490),
            "currency": CURRENCY, "active": match.bool(True)})

    def drive_product_found(url: str) -> None:
        client = catalog_client(url, reserve=reserve)
        try:
            product = client.get_product(1)
        finally:
            client.close()
        assert product is not None and (product.id, product.price) == (1, 2490)

    def product_not_found(pact: Pact) -> None:
        problem(request(pact, "a request for a product that does not exist", product_missing(),
                        "GET", "/v1/products/999", PRODUCT_PATH), 404)

    def drive_product_not_found(url: str) -> None:
        client = catalog_client(url, reserve=reserve)
        try:
            assert client.get_product(999) is None
        finally:
            client.close()

    cases = [Case(consumer, "catalog", "product found", product_found, drive_product_found),
             Case(consumer, "catalog", "product not found", product_not_found,
                  drive_product_not_found)]
    if not stock:
        return cases

    def stock_found(pact: Pact) -> None:
        ok(request(pact, "a request for a product's stock", product_exists(), "GET",
                   "/v1/products/1/stock", STOCK_PATH), 200, {
            "on_hand": match.int(5), "reserved": match.int(0), "available": match.int(5)})

    def drive_stock_found(url: str) -> None:
        client = catalog_client(url, reserve=reserve)
        try:
            level = client.get_stock(1)
        finally:
            client.close()
        assert level is not None and level.available == 5

    def stock_not_found(pact: Pact) -> None:
        problem(request(pact, "a request for the stock of a product that does not exist",
                        product_missing(), "GET", "/v1/products/999/stock", STOCK_PATH), 404)

    def drive_stock_not_found(url: str) -> None:
        client = catalog_client(url, reserve=reserve)
        try:
            assert client.get_stock(999) is None
        finally:
            client.close()

    return [*cases,
            Case(consumer, "catalog", "stock found", stock_found, drive_stock_found),
            Case(consumer, "catalog", "stock not found", stock_not_found,
                 drive_stock_not_found)]


def reservation_body(product_id: int, quantity: int) -> dict[str, Any]:
    return {"order_id": match.regex(ORDER_ID, regex=f"^{ORDER_ID_PATTERN}$"),
            "items": match.each_like({"product_id": match.int(product_id),
                                      "quantity": match.int(quantity)}, min=1)}


def reserve_request(pact: Pact, description: str, given: tuple[str, dict[str, Any]],
                    product_id: int, quantity: int) -> Any:
    return request(pact, description, given, "POST", "/v1/reservations",
                   r"^/v1/reservations$", key=True).with_body(
        reservation_body(product_id, quantity), content_type=JSON)


def drive_reserve(product_id: int, quantity: int, expected: ReserveOutcome
                  ) -> Callable[[str], None]:
    def drive(url: str) -> None:
        client = catalog_client(url, reserve=True)
        try:
            result = client.reserve(ORDER_ID, [(product_id, quantity)], f"order-{ORDER_ID}-key")
        finally:
            client.close()
        assert result.outcome is expected, result
        if expected is ReserveOutcome.SHORTAGE:
            assert result.shortages == [{"product_id": 1, "requested": 3, "available": 1}]
        if expected is ReserveOutcome.REFUSED:
            assert result.product_ids == [999]
    return drive


def reserve_held(pact: Pact) -> None:
    ok(reserve_request(pact, "a reservation of products in stock", product_exists(), 1, 2), 201)


def reserve_short(pact: Pact) -> None:
    problem(reserve_request(pact, "a reservation of more than is in stock",
                            product_exists(on_hand=1), 1, 3), 409, {
        "type": problem_type("insufficient-stock"),
        "detail": match.str("insufficient stock for product 1"),
        "shortages": match.each_like({"product_id": match.int(1), "requested": match.int(3),
                                      "available": match.int(1)}, min=1)})


def reserve_refused(pact: Pact) -> None:
    problem(reserve_request(pact, "a reservation of a product that does not exist",
                            product_missing(), 999, 1), 422, {
        "type": problem_type("unknown-product", "product-not-for-sale"),
        "detail": match.str("product 999 does not exist or is not for sale"),
        "product_ids": match.each_like(match.int(999), min=1)})


def reserve_existing(pact: Pact) -> None:
    held = reservation_state("held")
    problem(reserve_request(pact, "a reservation for an order that already has one", held,
                            1, 2), 409, {"type": problem_type("reservation-exists")})
    ok(request(pact, "a request for an order's reservation", held, "GET",
               f"/v1/reservations/{ORDER_ID}", RESERVATION_PATH), 200, {
        "order_id": match.regex(ORDER_ID, regex=f"^{ORDER_ID_PATTERN}$"),
        "status": match.regex("held", regex=r"^(held|committed|released)$")})


def transition_case(action: str, given: tuple[str, dict[str, Any]], status: int,
                    expected: TransitionOutcome) -> Case:
    """``POST /v1/reservations/{order_id}/{action}`` answered ``status``."""
    description = {200: f"a {action} of a held reservation",
                   404: f"a {action} of a reservation that does not exist",
                   409: f"a {action} of a reservation in the other final state"}[status]
    if action == "return":  # committed → returned; a held one is refused
        description = {200: "a return of a committed reservation",
                       409: "a return of a held reservation"}.get(status, description)

    def define(pact: Pact) -> None:
        interaction = request(pact, description, given, "POST",
                              f"/v1/reservations/{ORDER_ID}/{action}",
                              rf"^/v1/reservations/{ORDER_ID_PATTERN}/{action}$", key=True)
        if status == 200:
            ok(interaction, 200)
        else:
            slug = "not-found" if status == 404 else "invalid-reservation-state"
            problem(interaction, status, {"type": problem_type(slug),
                                          "detail": match.str(f"cannot {action}")})

    def drive(url: str) -> None:
        client = catalog_client(url, reserve=True)
        try:
            method = {"commit": client.commit, "release": client.release,
                      "return": client.return_stock}[action]
            result = method(ORDER_ID, f"order-{ORDER_ID}-{action}")
        finally:
            client.close()
        assert result.outcome is expected, result

    return Case("orders", "catalog", f"{action} {expected}", define, drive)


def orders_catalog_cases() -> list[Case]:
    return [
        *catalog_read_cases("orders", stock=False),
        Case("orders", "catalog", "reserve held", reserve_held,
             drive_reserve(1, 2, ReserveOutcome.HELD)),
        Case("orders", "catalog", "reserve shortage", reserve_short,
             drive_reserve(1, 3, ReserveOutcome.SHORTAGE)),
        Case("orders", "catalog", "reserve refused", reserve_refused,
             drive_reserve(999, 1, ReserveOutcome.REFUSED)),
        Case("orders", "catalog", "reserve when a reservation exists", reserve_existing,
             drive_reserve(1, 2, ReserveOutcome.HELD)),
        transition_case("commit", reservation_state("held"), 200, TransitionOutcome.DONE),
        transition_case("commit", no_reservation(), 404, TransitionOutcome.NOT_FOUND),
        transition_case("commit", reservation_state("released"), 409,
                        TransitionOutcome.CONFLICT),
        transition_case("release", reservation_state("held"), 200, TransitionOutcome.DONE),
        transition_case("release", no_reservation(), 404, TransitionOutcome.NOT_FOUND),
        transition_case("release", reservation_state("committed"), 409,
                        TransitionOutcome.CONFLICT),
        transition_case("return", reservation_state("committed"), 200, TransitionOutcome.DONE),
        transition_case("return", no_reservation(), 404, TransitionOutcome.NOT_FOUND),
        transition_case("return", reservation_state("held"), 409, TransitionOutcome.CONFLICT),
    ]


# -- orders → cart (with the customer's own token) ----------------------------------------

def cart_with_items() -> tuple[str, dict[str, Any]]:
    return state("{user_id} has {quantity} of product {product_id} in the cart",
                 user_id=CUSTOMER, quantity=2, **PRODUCT)


def get_cart(pact: Pact) -> None:
    ok(request(pact, "a request for the caller's cart", cart_with_items(), "GET", "/v1/cart",
               r"^/v1/cart$"), 200, {
        "user_id": match.str(CUSTOMER),
        "items": match.each_like({
            "product_id": match.int(1), "sku": match.str("COF-0001"),
            "name": match.str("Espresso beans 1 kg"), "unit_price": match.int(2490),
            "currency": CURRENCY, "quantity": match.int(2),
            "availability": match.regex(
                "in_stock",
                regex=r"^(in_stock|insufficient_stock|out_of_stock|unavailable|unknown)$"),
        }, min=1),
        "currency": CURRENCY,
        "pricing": match.regex("current", regex=r"^(current|stale)$")})


def drive_get_cart(url: str) -> None:
    cart = HttpCart(url, timeout=5.0)
    try:
        snapshot = cart.get_cart(f"Bearer {EXAMPLE_TOKEN}", CUSTOMER)
    finally:
        cart.close()
    assert snapshot.user_id == CUSTOMER and snapshot.items[0].quantity == 2


def clear_cart(pact: Pact) -> None:
    ok(request(pact, "a request to empty the caller's cart", cart_with_items(), "DELETE",
               "/v1/cart", r"^/v1/cart$"), 204)


def drive_clear_cart(url: str) -> None:
    cart = HttpCart(url, timeout=5.0)
    try:
        cart.clear_cart(f"Bearer {EXAMPLE_TOKEN}", CUSTOMER)  # raises unless 200/204
    finally:
        cart.close()


# -- orders → payments -----------------------------------------------------------------------

PAYMENT_PATH = r"^/v1/payments/pay_[0-9a-f]{32}$"


def payment_exists() -> tuple[str, dict[str, Any]]:
    return state("payment {payment_id} of {amount} {currency} is authorized for order "
                 "{order_id}", payment_id=PAYMENT_ID, order_id=ORDER_ID, customer_id=CUSTOMER,
                 amount=4980, currency="EUR")


def get_payment(pact: Pact) -> None:
    ok(request(pact, "a request for a payment", payment_exists(), "GET",
               f"/v1/payments/{PAYMENT_ID}", PAYMENT_PATH), 200, {
        "id": match.regex(PAYMENT_ID, regex=r"^pay_[0-9a-f]{32}$"),
        "order_id": match.str(ORDER_ID), "customer_id": match.str(CUSTOMER),
        "amount": match.int(4980), "currency": CURRENCY,
        "status": match.regex("authorized", regex=r"^[a-z_]+$")})


def drive_get_payment(url: str) -> None:
    payments = HttpPayments(url, token, timeout=5.0)
    try:
        payment = payments.get_payment(PAYMENT_ID)
    finally:
        payments.close()
    assert payment is not None and (payment.amount, payment.status) == (4980, "authorized")


def missing_payment(pact: Pact) -> None:
    problem(request(pact, "a request for a payment that does not exist",
                    state("payment {payment_id} does not exist", payment_id=PAYMENT_ID),
                    "GET", f"/v1/payments/{PAYMENT_ID}", PAYMENT_PATH), 404)


def drive_missing_payment(url: str) -> None:
    payments = HttpPayments(url, token, timeout=5.0)
    try:
        assert payments.get_payment(PAYMENT_ID) is None
    finally:
        payments.close()


def payment_body(status: str) -> dict[str, Any]:
    """A payment as the orders adapter reads it (``status`` matched by the spec's enum)."""
    return {"id": match.regex(PAYMENT_ID, regex=r"^pay_[0-9a-f]{32}$"),
            "order_id": match.str(ORDER_ID), "customer_id": match.str(CUSTOMER),
            "amount": match.int(4980), "currency": CURRENCY,
            "status": match.regex(status, regex=r"^(authorized|declined|captured|"
                                                r"partially_refunded|refunded|voided)$")}


def payment_captured() -> tuple[str, dict[str, Any]]:
    return state("payment {payment_id} of {amount} {currency} is captured for order "
                 "{order_id}", payment_id=PAYMENT_ID, order_id=ORDER_ID, customer_id=CUSTOMER,
                 amount=4980, currency="EUR")


def authorize_request(pact: Pact, description: str, method: str) -> Any:
    return request(pact, description, state("the payment provider {verdict} {method}",
                                            verdict="declines" if "declined" in method
                                            else "approves", method=method),
                   "POST", "/v1/payments", r"^/v1/payments$", key=True).with_body({
        "order_id": match.regex(ORDER_ID, regex=f"^{ORDER_ID_PATTERN}$"),
        "customer_id": match.str(CUSTOMER), "amount": match.int(4980), "currency": CURRENCY,
        "method": match.regex(method, regex=r"^tok_[A-Za-z0-9_]{1,60}$"),
        "description": match.str(f"Order {ORDER_ID}")}, content_type=JSON)


def authorize_approved(pact: Pact) -> None:
    ok(authorize_request(pact, "an authorisation the provider approves", "tok_visa"), 201,
       payment_body("authorized"))


def authorize_declined(pact: Pact) -> None:
    problem(authorize_request(pact, "an authorisation the provider declines",
                              "tok_card_declined"), 402, {
        "type": problem_type("payment-declined"),
        "decline_code": match.str("card_declined"),
        "payment": payment_body("declined")})


def drive_authorize(method: str, status: str) -> Callable[[str], None]:
    def drive(url: str) -> None:
        payments = HttpPayments(url, token, timeout=5.0)
        try:
            outcome = payments.authorize(ORDER_ID, CUSTOMER, 4980, "EUR", method,
                                         f"order-{ORDER_ID}-authorize")
        finally:
            payments.close()
        assert outcome.payment is not None and outcome.payment.status == status, outcome
    return drive


def payment_step(action: str, path: str, given: tuple[str, dict[str, Any]], status: int,
                 body: Any, answer: dict[str, Any], paid: str) -> Case:
    """A keyed step on an existing payment (capture, void, refund) that succeeds."""

    def define(pact: Pact) -> None:
        interaction = request(pact, f"a {action} of a payment", given, "POST",
                              f"/v1/payments/{PAYMENT_ID}/{path}",
                              rf"^/v1/payments/pay_[0-9a-f]{{32}}/{path}$", key=True)
        if body is not None:
            interaction.with_body(body, content_type=JSON)
        ok(interaction, status, answer)

    def drive(url: str) -> None:
        payments = HttpPayments(url, token, timeout=5.0)
        key = f"order-{ORDER_ID}-{action}"
        try:
            if action == "refund":
                outcome = payments.refund(PAYMENT_ID, key, "order cancelled")
            else:
                outcome = getattr(payments, action)(PAYMENT_ID, key)
        finally:
            payments.close()
        assert outcome.payment is not None and outcome.payment.status == paid, outcome

    return Case("orders", "payments", action, define, drive)


# -- orders → exchange (the v2 checkout settles non-EUR orders in EUR) -------------------

CONVERT_PATH = r"^/v1/convert$"
CODE = r"^[A-Z]{3}$"
RATE_PATTERN = r"^[0-9]+\.[0-9]{10}$"
USD_RATE = {"base": "EUR", "rate": "1.0850", "currency": "USD"}  # 1 EUR buys 1.0850 USD


def rate_known() -> tuple[str, dict[str, Any]]:
    return state("1 {base} buys {rate} {currency}", **USD_RATE)


def convert_request(pact: Pact, description: str, given: tuple[str, dict[str, Any]],
                    source: str, amount: int) -> Any:
    """``GET /v1/convert?from=<source>&to=EUR&amount=<amount>``."""
    return (request(pact, description, given, "GET", "/v1/convert", CONVERT_PATH)
            .with_query_parameter("from", match.regex(source, regex=CODE))
            .with_query_parameter("to", match.regex("EUR", regex=CODE))
            .with_query_parameter("amount", match.regex(str(amount), regex=r"^[0-9]{1,15}$")))


def convert_ok(pact: Pact) -> None:
    # 54.25 USD at 1 / 1.0850 = 0.9216589862 EUR per USD (rounded half-even) is 50.00 EUR.
    ok(convert_request(pact, "a conversion to EUR", rate_known(), "USD", 5425), 200, {
        "converted_amount": match.int(5000),
        "rate": match.regex("0.9216589862", regex=RATE_PATTERN),
        "stale": match.bool(False)})


def convert_no_rates(pact: Pact) -> None:
    problem(convert_request(pact, "a conversion when no rate was ever known",
                            state("no exchange rate was ever known"), "USD", 5425), 503,
            {"type": problem_type("no-exchange-rates")})


def convert_unknown(pact: Pact) -> None:
    problem(convert_request(pact, "a conversion from a currency without rate", state(
        "1 {base} buys {rate} {currency} and no rate of {unknown} is known", **USD_RATE,
        unknown="CHF"), "CHF", 4980), 404, {"type": problem_type("unknown-currency")})


def drive_convert(source: str, amount: int, expected: Conversion | None, refusal: str = ""
                  ) -> Callable[[str], None]:
    def drive(url: str) -> None:
        exchange = HttpExchange(url, token, timeout=5.0)
        try:
            outcome = exchange.convert(amount, source, "EUR")
        finally:
            exchange.close()
        assert outcome.conversion == expected, outcome
        assert refusal in (outcome.refused or ""), outcome
        assert (outcome.refused is None) == (expected is not None), outcome
    return drive


CASES: list[Case] = [
    *catalog_read_cases("cart", stock=True),
    *orders_catalog_cases(),
    Case("orders", "cart", "get cart", get_cart, drive_get_cart),
    Case("orders", "cart", "clear cart", clear_cart, drive_clear_cart),
    Case("orders", "payments", "payment found", get_payment, drive_get_payment),
    Case("orders", "payments", "payment not found", missing_payment, drive_missing_payment),
    Case("orders", "payments", "authorize approved", authorize_approved,
         drive_authorize("tok_visa", "authorized")),
    Case("orders", "payments", "authorize declined", authorize_declined,
         drive_authorize("tok_card_declined", "declined")),
    payment_step("capture", "capture", payment_exists(), 200, {}, payment_body("captured"),
                 "captured"),
    payment_step("void", "void", payment_exists(), 200, None, payment_body("voided"), "voided"),
    payment_step("refund", "refunds", payment_captured(), 201,
                 {"reason": match.str("order cancelled")},
                 {"payment": payment_body("refunded")}, "refunded"),
    Case("orders", "exchange", "convert", convert_ok,
         drive_convert("USD", 5425, Conversion(5000, "EUR", "0.9216589862", stale=False))),
    Case("orders", "exchange", "convert without any rate", convert_no_rates,
         drive_convert("USD", 5425, None, "no-exchange-rates")),
    Case("orders", "exchange", "convert an unknown currency", convert_unknown,
         drive_convert("CHF", 4980, None, "unknown-currency")),
]
"""Every consumer case, in pact-file order."""


def pairs() -> list[tuple[str, str]]:
    """The ``(consumer, provider)`` pairs with cases."""
    return sorted({(c.consumer, c.provider) for c in CASES})
