"""``charter demo`` (``make demo``): the user journey, step by step, through the gateway.

token → browse → cart → order → payment → confirm (stock committed, payment captured;
loyalty and notifications act on the event) → loyalty balance → the notification, as
staff sees it. Every step is
a real HTTP call to the gateway; inside, the gateway and the services talk over mTLS.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from charter import config
from charterctl.user_login import user_token

DEMO_CARD = "4242424242424242"


FOLLOW_UP_TIMEOUT = 30.0
"""Seconds the tour waits for loyalty's and notifications' replies to a confirmation."""


class DemoFailed(RuntimeError):
    """A step got an answer it did not expect."""


class Tour:
    """Prints each step and checks each answer."""

    def __init__(self, gateway: str, out: Callable[[str], None] = print) -> None:
        self.gateway = gateway.rstrip("/")
        self.http = httpx.Client(timeout=15)
        self.out = out
        self.step_no = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        self.out(f"\n{self.step_no}. {title}")

    def say(self, text: str) -> None:
        self.out(f"   {text}")

    def call(self, method: str, path: str, token: str, *, expect: tuple[int, ...] = (200,),
             idempotent: bool = False, quiet: bool = False, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        if idempotent:
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4().hex}"
        response = self.http.request(method, f"{self.gateway}{path}", headers=headers, **kwargs)
        if not quiet:
            self.say(f"{method} {path} → {response.status_code}")
        if response.status_code not in expect:
            raise DemoFailed(f"{method} {path}: {response.status_code} {response.text[:400]}")
        return response.json() if response.content else None


def money(amount: int, currency: str) -> str:
    """Minor units as a readable amount (2 decimals, enough for the demo currencies)."""
    return f"{amount / 100:,.2f} {currency}"


def run(gateway: str, auth_url: str, password: str, staff_password: str,
        out: Callable[[str], None] = print) -> dict[str, Any]:
    """Walk the tour; return what it created (for tests)."""
    tour = Tour(gateway, out)
    redirect = f"{gateway.rstrip('/')}/ui/oauth2-redirect.html"

    tour.step("Token: alice signs in (authorization code + PKCE)")
    alice = user_token(auth_url, "alice@example.com", password, redirect_uri=redirect)
    token = alice["access_token"]
    tour.say(f"access token {token[:24]}… expires in {alice['expires_in']} s; "
             f"scopes: {alice.get('scope', '')}")

    tour.step("Browse the catalog")
    categories = tour.call("GET", "/catalog/v1/categories", token)
    tour.say("categories: " + ", ".join(c["name"] for c in categories["items"]))
    products = tour.call("GET", "/catalog/v1/products", token,
                         params={"page_size": 3, "in_stock": "true"})
    for p in products["items"]:
        tour.say(f"  #{p['id']} {p['name']} — {money(p['price'], p['currency'])}")

    tour.step("Fill the cart")
    tour.call("DELETE", "/cart/v1/cart", token, expect=(200, 204))
    for p, qty in zip(products["items"][:2], (2, 1), strict=False):
        tour.call("POST", "/cart/v1/cart/items", token, expect=(200, 201),
                  json={"product_id": p["id"], "quantity": qty})
    cart = tour.call("GET", "/cart/v1/cart", token)
    tour.say(f"cart: {cart['item_count']} items, total {money(cart['total'], cart['currency'])}")

    tour.step("What is that in US dollars? (exchange)")
    conv = tour.call("GET", "/exchange/v1/convert", token,
                     params={"from": cart["currency"], "to": "USD", "amount": cart["total"]})
    tour.say(f"{money(cart['total'], cart['currency'])} ≈ "
             f"{money(conv['converted_amount'], 'USD')} at {conv['rate']}")

    tour.step("Place the order (stock reserved in catalog, idempotently)")
    order = tour.call("POST", "/orders/v1/orders", token, expect=(201,), idempotent=True,
                      json={"source": "cart"})
    tour.say(f"order {order['id']}: {order['status']}, "
             f"total {money(order['total'], order['currency'])}")

    tour.step("Pay (payments authorises the card)")
    payment = tour.call("POST", "/payments/v1/payments", token, expect=(201,), idempotent=True,
                        json={"order_id": str(order["id"]), "amount": order["total"],
                              "currency": order["currency"], "card_number": DEMO_CARD})
    tour.say(f"payment {payment['id']}: {payment['status']} "
             f"({payment['payment_method']['brand']} •••• {payment['payment_method']['last4']})")

    tour.step("Confirm the order (stock committed, payment captured; loyalty and "
              "notifications hear orders.OrderConfirmed)")
    confirmed = tour.call("POST", f"/orders/v1/orders/{order['id']}/confirm", token,
                          idempotent=True, json={"payment_id": payment["id"]})
    tour.say(f"order {confirmed['id']}: {confirmed['status']}")
    confirmed = wait_for_follow_ups(tour, token, str(order["id"]))
    tour.say(f"loyalty {confirmed.get('loyalty_status')}, notification "
             f"{confirmed.get('notification_status')} (their replies, by event)")

    tour.step("Loyalty balance")
    balance = tour.call("GET", "/loyalty/v1/balance", token)
    tour.say(f"alice has {balance['balance']} points")

    tour.step("The notification, as staff sees it")
    staff = user_token(auth_url, "staff@example.com", staff_password, redirect_uri=redirect,
                       scope="notifications:read")["access_token"]
    sent = tour.call("GET", "/notifications/v1/notifications", staff,
                     params={"order_id": str(order["id"])})
    for n in sent["items"]:
        tour.say(f"{n['channel']} to {n['recipient']}: {n.get('subject') or ''} "
                 f"[{n['status']} via {n.get('provider')}]")
    if not sent["items"]:
        raise DemoFailed("no notification was sent for the order")

    tour.out("\nDone: every call went through the gateway; services talked over mTLS.")
    return {"order": confirmed, "payment": payment, "balance": balance,
            "notifications": sent["items"]}


def wait_for_follow_ups(tour: Tour, token: str, order_id: str,
                        timeout: float = FOLLOW_UP_TIMEOUT) -> dict[str, Any]:
    """The order once loyalty and notifications replied to ``orders.OrderConfirmed``
    (they act on the event asynchronously); :class:`DemoFailed` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        order: dict[str, Any] = tour.call("GET", f"/orders/v1/orders/{order_id}", token,
                                          quiet=True)
        if order.get("loyalty_status") == "done" and order.get("notification_status") == "done":
            return order
        if time.monotonic() > deadline:
            raise DemoFailed(f"loyalty and notifications did not answer within {timeout:.0f} s "
                             f"(loyalty {order.get('loyalty_status')}, notification "
                             f"{order.get('notification_status')}); see `charter dlq list`")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``charter demo``."""
    import argparse

    parser = argparse.ArgumentParser(prog="charter demo", description=__doc__)
    parser.add_argument("--gateway", default=config.service_url("gateway"))
    parser.add_argument("--auth-url", default=config.service_url("auth"))
    args = parser.parse_args(argv)
    try:  # the environment's, else (development mode) those `charter up --dev` generated
        password = config.secret("DEMO_ALICE_PASSWORD")
        staff_password = config.secret("DEMO_STAFF_PASSWORD")
    except config.ConfigError as exc:
        print(f"charter demo: {exc}", file=sys.stderr)
        return 2
    print(f"Charter tour through the gateway at {args.gateway}")
    try:
        run(args.gateway, args.auth_url, password, staff_password)
    except (DemoFailed, httpx.HTTPError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a login error, an unexpected answer shape
        print(f"\ndemo failed: {type(exc).__name__}: {json.dumps(str(exc))}", file=sys.stderr)
        return 1
    return 0
