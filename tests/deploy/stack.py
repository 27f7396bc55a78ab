"""The running platform the deploy tests share, the traffic they drive, and scrapes.

One ``charter up`` (2 workers per service, so ``/metrics`` is the multiprocess exposition
production uses; mTLS on; SQLite and the embedded broker) serves both the dashboards'
metric check and the real alerting test (``tests/deploy/conftest.py`` starts it once).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from charterctl.user_login import user_token
from tests.support.platform import COMPONENTS, Platform

ALICE = ("alice@example.com", "alice-password-1")
GOOD_CARD = {"type": "token", "token": "tok_visa"}
SCRAPER = "prometheus"  # the identity Prometheus presents (charterctl.pki.SCRAPER_IDENTITY)


def pki(platform: Platform) -> Path:
    """The platform's PKI directory (CA, one certificate per identity)."""
    return Path(platform.env["CHARTER_VAR_DIR"]) / "pki"


def gateway(platform: Platform) -> str:
    return platform.url("gateway")


def login(platform: Platform) -> dict[str, str]:
    """Authorization headers with alice's token (code flow + PKCE against auth)."""
    token = user_token(platform.url("auth"), *ALICE,
                       redirect_uri=f"{gateway(platform)}/ui/oauth2-redirect.html")
    return {"Authorization": f"Bearer {token['access_token']}"}


def drive(platform: Platform, http: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    """Reads on every API, a cart, and one v2 checkout that settles; the final order."""
    base = gateway(platform)

    def ok(r: httpx.Response) -> httpx.Response:
        assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.status_code} " \
                                    f"{r.text[:300]}"
        return r

    products = ok(http.get(f"{base}/catalog/v1/products", headers=headers,
                           params={"page_size": 20})).json()["items"]
    for product in products[:3]:  # a second read of each comes from the cache
        ok(http.get(f"{base}/catalog/v1/products/{product['id']}", headers=headers))
        ok(http.get(f"{base}/catalog/v1/products/{product['id']}", headers=headers))
    ok(http.get(f"{base}/exchange/v1/rates", headers=headers, params={"from": "EUR"}))
    ok(http.get(f"{base}/exchange/v1/rates", headers=headers, params={"from": "EUR"}))
    ok(http.get(f"{base}/loyalty/v1/balance", headers=headers))
    eur = next(p for p in products if p["currency"] == "EUR" and p.get("active", True))
    ok(http.post(f"{base}/cart/v1/cart/items", headers=headers,
                 json={"product_id": eur["id"], "quantity": 1}))
    ok(http.get(f"{base}/cart/v1/cart", headers=headers))
    placed = ok(http.post(
        f"{base}/orders/v2/orders", json={"source": "cart", "payment_method": GOOD_CARD},
        headers={**headers, "Idempotency-Key": f"deploy-{uuid.uuid4().hex}",
                 "Prefer": "wait=5"}))
    order: dict[str, Any] = placed.json()
    ok(http.get(f"{base}/orders/v2/orders/{order['id']}", headers=headers))
    ok(http.get(f"{base}/orders/v1/orders", headers=headers))  # deprecated v1: its counter
    return order


def scrape(platform: Platform, component: str) -> str:
    """``component``'s ``/metrics`` as Prometheus reads it (its certificate on mTLS)."""
    with platform.client(SCRAPER, timeout=10) as http:
        r = http.get(platform.url(component) + "/metrics")
    assert r.status_code == 200, f"{component} /metrics: {r.status_code}"
    return r.text


def scrape_all(platform: Platform) -> dict[str, str]:
    """Every component's ``/metrics`` page."""
    return {c: scrape(platform, c) for c in COMPONENTS}


def set_faults(platform: Platform, component: str, profile: dict[str, Any] | None) -> None:
    """Replace ``component``'s fault profile through its admin endpoint (operator's
    certificate, development mode); ``None`` clears it."""
    url = platform.url(component) + "/_charter/faults"
    with platform.client("charter-cli", timeout=10) as http:
        r = http.delete(url) if profile is None else http.put(url, json=profile)
    assert r.status_code in (200, 204), f"{component} faults: {r.status_code} {r.text[:200]}"


def trip_a_breaker(platform: Platform, http: httpx.Client, headers: dict[str, str]) -> None:
    """Make catalog fail every request for a moment while cart reads it: cart retries,
    its breaker to catalog opens and refuses calls (the resilience metrics move)."""
    base = gateway(platform)
    set_faults(platform, "catalog", {"*": {"error_rate": 1.0}})
    try:
        time.sleep(1.2)  # every catalog worker re-reads the live file within 0.5 s
        for _ in range(8):
            http.post(f"{base}/cart/v1/cart/items", headers=headers,
                      json={"product_id": 1, "quantity": 1})
    finally:
        set_faults(platform, "catalog", None)
