"""End to end: ``charter up`` as a subprocess, tokens from auth over HTTP, real calls.

Runs twice: on the embedded defaults (SQLite files) and on the real PostgreSQL server
(one database per service, created by ``charter up`` itself and dropped afterwards).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import POSTGRES_ADMIN_URL, unavailable
from tests.support.platform import COMPONENTS, Platform, drop_databases, start, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    extra: dict[str, str] = {}
    databases: list[str] = []
    if request.param == "postgres":
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(POSTGRES_ADMIN_URL)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:
            unavailable("PostgreSQL", exc)
        prefix = f"charter_e2e_{uuid.uuid4().hex[:8]}"
        databases = [f"{prefix}_{c}" for c in COMPONENTS]
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        extra["DATABASE_URL"] = f"{base}/{prefix}_{{service}}"
    platform = start(tmp_path, extra)
    try:
        yield platform
    finally:
        if platform.proc.poll() is None:
            stop(platform)
        if databases:
            drop_databases(databases)


def test_token_then_catalog_and_cart(platform: Platform) -> None:
    catalog, cart = platform.url("catalog"), platform.url("cart")

    assert httpx.get(f"{catalog}/v1/products").status_code == 401

    token = platform.token("demo-cli")
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-Id": "e2e-check-1"}
    r = httpx.get(f"{catalog}/v1/products", headers=headers, params={"page_size": 5})
    assert r.status_code == 200, r.text
    assert r.headers["x-correlation-id"] == "e2e-check-1"
    page = r.json()
    assert page["total"] >= 50 and len(page["items"]) == 5
    product = page["items"][0]

    r = httpx.post(f"{cart}/v1/cart/items", headers=headers,
                   json={"product_id": product["id"], "quantity": 2})
    assert r.status_code in (200, 201), r.text
    r = httpx.get(f"{cart}/v1/cart", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    line = next(i for i in body["items"] if str(i["product_id"]) == str(product["id"]))
    assert line["quantity"] == 2
    assert line["unit_price"] == product["price"]

    narrow = platform.token("demo-cli", scope="catalog:read")
    r = httpx.get(f"{cart}/v1/cart", headers={"Authorization": f"Bearer {narrow}"})
    assert r.status_code == 403

    r = httpx.get(f"{platform.url('auth')}/.well-known/jwks.json")
    assert r.status_code == 200 and r.json()["keys"]

    assert stop(platform) == 0
    for comp in COMPONENTS:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{platform.url(comp)}/health/live", timeout=2)


def test_user_token_through_code_flow(tmp_path: Path) -> None:
    """``charter token --user`` runs login + consent + PKCE against the real auth server."""
    platform = start(tmp_path, {"CHARTER_MTLS": "0"}, only="auth")
    try:
        env = dict(platform.env, CHARTER_PASSWORD="alice-password-1")
        done = subprocess.run([sys.executable, "-m", "charter.cli", "token", "--user",
                               "alice@example.com", "--scope", "cart:read catalog:write"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        claims = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
        assert claims["email"] == "alice@example.com" and claims["role"] == "customer"
        assert claims["scope"] == "cart:read"  # a customer is never granted catalog:write
        env["CHARTER_PASSWORD"] = "wrong-password"
        bad = subprocess.run([sys.executable, "-m", "charter.cli", "token", "--user",
                              "alice@example.com"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 1 and "login failed" in bad.stderr
    finally:
        stop(platform)
