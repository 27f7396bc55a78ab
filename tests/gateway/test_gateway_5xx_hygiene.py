"""No internal detail in the gateway's 5xx and readiness answers: an exception's class name
or text (a file path, a host, a library's error type) goes to the log with the correlation
id; the body names at most which dependency failed."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from charter.config import AuthSettings, ConfigError
from charter.security.revocation import DenySet, RevocationPoller
from charter.security.tokens import TokenVerifier
from charter.testing import TokenFactory
from services.gateway import upstreams
from services.gateway.app import Gateway
from services.gateway.settings import GatewaySettings
from tests.support.servers import free_port

pytestmark = pytest.mark.anyio

URL = "/catalog/v1/products"
SECRET_PATH = "/etc/charter/pki/gateway-key.pem"


def client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(gateway), base_url="http://gw")


def bearer(tokens: TokenFactory) -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.token(scope="catalog:read", role="staff")}


def assert_no_internals(text: str, *words: str) -> None:
    for word in ("Error", "Exception", "Traceback", *words):
        assert word not in text, text


async def test_upstream_tls_setup_failure_is_503_without_its_reason(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken_tls() -> object:
        raise ConfigError(f"gateway certificate {SECRET_PATH} is missing")

    monkeypatch.setattr(upstreams, "tls_context", broken_tls)
    gateway = make_gateway(upstreams={"catalog": "https://catalog.internal:8101"})
    with caplog.at_level(logging.INFO):
        async with client(gateway) as http:
            r = await http.get(URL, headers={**bearer(tokens), "X-Correlation-Id": "cid-tls"})
    await gateway.upstreams.aclose()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Service Unavailable" and "catalog" in body["detail"]
    assert body["correlation_id"] == "cid-tls"
    assert_no_internals(r.text, SECRET_PATH, "TLS", "certificate")
    assert any(SECRET_PATH in rec.getMessage() for rec in caplog.records)


async def test_unconfigured_upstream_is_503_naming_only_the_service(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway()
    gateway.upstreams.urls["catalog"] = None  # e.g. CATALOG_URL missing in a deployment
    with caplog.at_level(logging.INFO):
        async with client(gateway) as http:
            r = await http.get(URL, headers={**bearer(tokens), "X-Correlation-Id": "cid-none"})
    await gateway.upstreams.aclose()
    assert r.status_code == 503
    assert r.json()["correlation_id"] == "cid-none"
    assert "configured" not in r.text
    assert any("No upstream is configured" in rec.getMessage() for rec in caplog.records)


async def test_unreachable_upstream_502_carries_the_correlation_id(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory) -> None:
    gateway = make_gateway(upstreams={"catalog": f"http://127.0.0.1:{free_port()}"})
    async with client(gateway) as http:
        r = await http.get(URL, headers={**bearer(tokens), "X-Correlation-Id": "cid-502"})
    await gateway.upstreams.aclose()
    assert r.status_code == 502
    assert r.json()["correlation_id"] == "cid-502"
    assert_no_internals(r.text, "ConnectError")


async def test_readiness_upstreams_name_no_exception(
        make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken_tls() -> object:
        raise ConfigError(f"gateway certificate {SECRET_PATH} is missing")

    monkeypatch.setattr(upstreams, "tls_context", broken_tls)
    gateway = make_gateway(upstreams={"catalog": f"http://127.0.0.1:{free_port()}",
                                      "cart": "https://cart.internal:8102"})
    with caplog.at_level(logging.INFO):
        async with client(gateway) as http:
            r = await http.get("/health/ready?upstreams=1")
    await gateway.upstreams.aclose()
    found = r.json()["upstreams"]
    assert found["catalog"] == "failed" and found["cart"] == "failed"
    assert found["orders"] == "ok"  # the echo
    assert_no_internals(r.text, "ConnectError", SECRET_PATH, "TLS")
    logged = " ".join(rec.getMessage() for rec in caplog.records)
    assert "ConnectError" in logged and SECRET_PATH in logged


async def test_readiness_names_a_stale_revocation_feed_without_the_error(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]

    def feed_down(cursor: str | None) -> dict[str, object]:
        raise httpx.ConnectError("auth.internal:8090 refused")

    deny = DenySet()
    poller = RevocationPoller(feed_down, deny, max_staleness=5, clock=lambda: now[0])
    poller.poll_once()
    now[0] = 60.0
    settings = AuthSettings(tokens.issuer, tokens.audience, "")
    verifier = TokenVerifier(settings, tokens.verifier().jwks, revocations=deny, poller=poller)
    gateway = make_gateway(verifier=verifier)
    with caplog.at_level(logging.INFO):
        async with client(gateway) as http:
            r = await http.get("/health/ready")
    await gateway.upstreams.aclose()
    assert r.status_code == 503
    assert r.json()["checks"]["revocations"] == "failed"
    assert_no_internals(r.text, "unreachable for")
    assert any("revocation" in rec.getMessage() and "60 s" in rec.getMessage()
               for rec in caplog.records)


async def test_no_gateway_5xx_body_has_a_detail_beyond_the_dependency(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory) -> None:
    """A 504 names the service and the timeout the gateway applies, nothing else."""
    hanging = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(GatewaySettings(rate_limit=0, upstream_timeout=0.01),
                           upstreams={"catalog": hanging})
    async with client(gateway) as http:
        r = await http.get(URL, headers={**bearer(tokens), "X-Correlation-Id": "cid-5xx"})
    await gateway.upstreams.aclose()
    assert r.status_code in (502, 504)
    assert r.json()["correlation_id"] == "cid-5xx"
    assert_no_internals(r.text)
