"""End to end: ``charter up`` as a subprocess, tokens from auth over HTTP, real calls.

Everything runs as it would on a laptop: every component its own process, the gateway
as the only plain-HTTP entry point, mutual TLS between the gateway and the services.
The platform test runs twice: on the embedded defaults (SQLite files) and on the real
PostgreSQL server (one database per service, created by ``charter up`` and dropped
afterwards). The tour test runs ``charter demo`` against the PostgreSQL platform.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.platform import Platform, running, start, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    with running(tmp_path, request.param) as started:
        yield started


def test_token_then_calls_through_the_gateway(platform: Platform) -> None:
    gateway = platform.url("gateway")

    assert httpx.get(f"{gateway}/catalog/v1/products").status_code == 401

    token = platform.token("demo-cli")
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-Id": "e2e-check-1"}
    r = httpx.get(f"{gateway}/catalog/v1/products", headers=headers, params={"page_size": 5})
    assert r.status_code == 200, r.text
    assert r.headers["x-correlation-id"] == "e2e-check-1"
    page = r.json()
    assert page["total"] >= 50 and len(page["items"]) == 5
    product = page["items"][0]

    r = httpx.post(f"{gateway}/cart/v1/cart/items", headers=headers,
                   json={"product_id": product["id"], "quantity": 2})
    assert r.status_code in (200, 201), r.text
    r = httpx.get(f"{gateway}/cart/v1/cart", headers=headers)  # cart → catalog over mTLS
    assert r.status_code == 200, r.text
    line = next(i for i in r.json()["items"] if i["product_id"] == product["id"])
    assert line["quantity"] == 2 and line["unit_price"] == product["price"]

    narrow = platform.token("demo-cli", scope="catalog:read")
    r = httpx.get(f"{gateway}/cart/v1/cart", headers={"Authorization": f"Bearer {narrow}"})
    assert r.status_code == 403

    # every spec is routed: each API's OpenAPI document and Swagger UI through the gateway
    portal = httpx.get(f"{gateway}/").text
    for api in ("catalog", "cart", "orders", "payments", "exchange", "loyalty",
                "notifications"):
        assert f"/{api}/v1/ui/" in portal
        spec = httpx.get(f"{gateway}/{api}/v1/openapi.json")
        assert spec.status_code == 200 and spec.json()["servers"][0]["url"] == f"/{api}/v1"

    # orders v1 is deprecated (governance/deprecation.yaml); v2 is served beside it
    r = httpx.get(f"{gateway}/orders/v1/orders", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["deprecation"].startswith("@") and r.headers["sunset"].endswith(" GMT")
    assert '/orders/v2/ui/>; rel="successor-version"' in r.headers["link"]
    spec = httpx.get(f"{gateway}/orders/v2/openapi.json")
    assert spec.status_code == 200 and spec.json()["servers"][0]["url"] == "/orders/v2"
    assert "deprecation" not in httpx.get(f"{gateway}/orders/v2/orders", headers=headers).headers


def test_services_verify_tokens_and_require_client_certificates(platform: Platform) -> None:
    catalog = platform.url("catalog")
    assert catalog.startswith("https://")
    # a platform certificate but no token: the service itself refuses (zero trust)
    with platform.client() as client:
        assert client.get(f"{catalog}/v1/products").status_code == 401
        token = platform.token("demo-cli")
        ok = client.get(f"{catalog}/v1/products", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    # no client certificate: refused at the TLS handshake
    ca = Path(platform.env["CHARTER_VAR_DIR"]) / "pki" / "ca.pem"
    no_cert = ssl.create_default_context(cafile=str(ca))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(f"{catalog}/health/live", verify=no_cert, timeout=5)

    assert stop(platform) == 0
    for comp in ("auth", "gateway"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{platform.url(comp)}/health/live", timeout=2)


def test_demo_tour_on_postgres(tmp_path: Path) -> None:
    """``make demo``'s tour against ``charter up`` on PostgreSQL, over mTLS inside."""
    with running(tmp_path, "postgres") as platform:
        done = platform.charter("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in ("Token", "Browse", "cart", "order", "Pay", "Confirm", "Loyalty",
                 "notification"):
        assert step in out, out
    assert "confirmed" in out and "points" in out and "sent via file" in out


def test_user_token_through_code_flow(tmp_path: Path) -> None:
    """``charter token --user`` runs login + consent + PKCE against the real auth server."""
    platform = start(tmp_path, {"CHARTER_MTLS": "0"}, only="auth")
    try:
        env = dict(platform.env, CHARTER_PASSWORD="alice-password-1")
        done = subprocess.run([sys.executable, "-m", "charterctl.cli", "token", "--user",
                               "alice@example.com", "--scope", "cart:read catalog:write"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        claims = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
        assert claims["email"] == "alice@example.com" and claims["role"] == "customer"
        assert claims["scope"] == "cart:read"  # a customer is never granted catalog:write
        env["CHARTER_PASSWORD"] = "wrong-password"
        bad = subprocess.run([sys.executable, "-m", "charterctl.cli", "token", "--user",
                              "alice@example.com"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 1 and "login failed" in bad.stderr
    finally:
        stop(platform)
