"""Real uvicorn servers over mutual TLS: handshake refusals, caller allow-lists, clients."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mtls_support import raw_tls_exchange

from charter import config, service
from charter.cache import TTLCache
from charter.db import Database
from charter.http import HttpClient, create_async_client, create_client
from charter.security import mtls
from charter.serve import uvicorn_tls_config
from charter.testing import TokenFactory
from charterctl import pki
from services.catalog.app import catalog_service
from services.catalog.app import create_app as create_catalog_app
from services.catalog_client.client import HttpCatalogClient
from tests.support.servers import ThreadServer, free_port

Bearer = Callable[..., dict[str, str]]
CallAs = Callable[[str], httpx.Client]
GET_PRODUCTS = b"GET /v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def reservation(product_id: int, order_id: str = "order-1") -> dict[str, Any]:
    return {"order_id": order_id, "items": [{"product_id": product_id, "quantity": 2}]}


def no_cert_context(pki_dir: Path, **kwargs: Any) -> ssl.SSLContext:
    """Trusts our CA (the server is genuine) but presents no client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / pki.CA_CERT))
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


def foreign_context(pki_dir: Path, foreign_pki: Path, identity: str = "orders"
                    ) -> ssl.SSLContext:
    """Trusts our CA but presents a certificate named ``identity`` from another CA."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / pki.CA_CERT))
    files = pki.credentials(identity, foreign_pki)
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


# -- the handshake --------------------------------------------------------------------------


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server drops the connection without a byte of HTTP.

    With TLS 1.2 the handshake itself fails (``SSLError``); with TLS 1.3 the client's side
    of the handshake completes first and the server closes the connection (EOF, an alert or
    a reset on the first read).
    """
    try:
        answer = raw_tls_exchange(port, ctx, GET_PRODUCTS)
    except (ssl.SSLError, ConnectionError):
        return True
    return answer == b""


def test_valid_client_gets_an_http_answer(catalog_server: ThreadServer, pki_dir: Path) -> None:
    answer = raw_tls_exchange(catalog_server.port, mtls.client_ssl_context("cart", pki_dir),
                              GET_PRODUCTS)
    assert answer.startswith(b"HTTP/1.1 401"), answer  # the control: TLS fine, token missing


def test_client_without_certificate_is_refused_at_the_handshake(
        catalog_server: ThreadServer, pki_dir: Path) -> None:
    assert refused(catalog_server.port, no_cert_context(pki_dir))
    tls12 = no_cert_context(pki_dir, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        raw_tls_exchange(catalog_server.port, tls12, GET_PRODUCTS)
    with httpx.Client(verify=no_cert_context(pki_dir)) as client, \
            pytest.raises(httpx.TransportError):
        client.get(f"https://127.0.0.1:{catalog_server.port}/health/live")


def test_certificate_from_another_ca_is_refused(
        catalog_server: ThreadServer, pki_dir: Path, foreign_pki: Path) -> None:
    assert refused(catalog_server.port, foreign_context(pki_dir, foreign_pki))
    tls12 = foreign_context(pki_dir, foreign_pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        raw_tls_exchange(catalog_server.port, tls12, GET_PRODUCTS)
    with httpx.Client(verify=foreign_context(pki_dir, foreign_pki)) as client, \
            pytest.raises(httpx.TransportError):
        client.get(f"https://127.0.0.1:{catalog_server.port}/health/live")


def test_client_refuses_a_server_certified_by_another_ca(
        catalog_server: ThreadServer, foreign_pki: Path) -> None:
    ctx = mtls.client_ssl_context("orders", foreign_pki)
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://127.0.0.1:{catalog_server.port}/health/live")


def test_plain_http_to_the_tls_port_gets_no_answer(catalog_server: ThreadServer) -> None:
    with httpx.Client() as client, pytest.raises(httpx.TransportError):
        client.get(f"http://127.0.0.1:{catalog_server.port}/health/live")


# -- internal operations ---------------------------------------------------------------


def test_service_not_on_the_allow_list_gets_403(
        call_as: CallAs, bearer: Bearer, product: dict[str, Any]) -> None:
    cart = call_as("cart")
    answer = cart.post("/v1/reservations", json=reservation(product["id"]),
                       headers=bearer(**{"Idempotency-Key": "key-cart-0001"}))
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 403 and problem["title"] == "Forbidden"
    assert "cart" in problem["detail"]
    for method, path in (("GET", "/v1/reservations/order-1"),
                         ("POST", "/v1/reservations/order-1/commit"),
                         ("POST", "/v1/reservations/order-1/release")):
        other = cart.request(method, path, headers=bearer(**{"Idempotency-Key": "k-000001"}))
        assert other.status_code == 403, (method, path, other.text)
    # Refused before the token is even looked at: no token, same 403.
    assert cart.post("/v1/reservations", json={}).status_code == 403
    # The gateway (public traffic) may not reach internal operations either.
    gateway = call_as("gateway")
    assert gateway.get("/v1/reservations/order-1", headers=bearer()).status_code == 403


def test_allowed_caller_gets_through(
        call_as: CallAs, bearer: Bearer, product: dict[str, Any]) -> None:
    orders = call_as("orders")
    created = orders.post("/v1/reservations", json=reservation(product["id"]),
                          headers=bearer(**{"Idempotency-Key": "key-orders-0001"}))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "held"
    got = orders.get("/v1/reservations/order-1", headers=bearer())
    assert got.status_code == 200 and got.json()["order_id"] == "order-1"
    committed = orders.post("/v1/reservations/order-1/commit",
                            headers=bearer(**{"Idempotency-Key": "key-orders-0002"}))
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    # The identity check does not replace the token check.
    assert orders.get("/v1/reservations/order-1").status_code == 401
    assert orders.get("/v1/reservations/order-1",
                      headers=bearer(scope="catalog:read")).status_code == 403


@pytest.mark.parametrize("identity", ["cart", "gateway", "charter-cli", "orders"])
def test_normal_operations_accept_any_platform_certificate(
        call_as: CallAs, bearer: Bearer, product: dict[str, Any], identity: str) -> None:
    client = call_as(identity)
    answer = client.get(f"/v1/products/{product['id']}", headers=bearer())
    assert answer.status_code == 200, answer.text
    assert answer.json()["sku"] == "TEA-0001"
    assert client.get("/health/ready").json()["status"] == "ok"


# -- outbound clients ----------------------------------------------------------------------


def test_service_url_is_https_and_clients_present_the_process_identity(
        catalog_server: ThreadServer, bearer: Bearer, product: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = config.service_url("catalog")
    assert url == f"https://127.0.0.1:{catalog_server.port}"
    monkeypatch.setenv("CHARTER_SERVICE", "cart")
    # The cart's real catalog adapter, unchanged, talks to the TLS catalog.
    catalog = HttpCatalogClient(url, lambda: bearer()["Authorization"].split()[1])
    try:
        found = catalog.get_product(product["id"])
        assert found is not None and found.price == 890
    finally:
        catalog.close()
    # As "cart" the internal operation is refused; as "orders" (explicit) it is not.
    with create_client(url) as as_cart:
        refused = as_cart.get("/v1/reservations/none", headers=bearer())
    assert refused.status_code == 403
    orders = HttpClient(url, name="catalog", identity="orders",
                        token=lambda: bearer()["Authorization"].split()[1])
    try:
        assert orders.get("/v1/reservations/none").status_code == 404
    finally:
        orders.close()


def test_async_client_for_the_gateway(catalog_server: ThreadServer, bearer: Bearer,
                                      product: dict[str, Any]) -> None:
    url = config.service_url("catalog")

    async def fetch() -> tuple[int, int]:
        async with create_async_client(url, identity="gateway") as client:
            public = await client.get(f"/v1/products/{product['id']}", headers=bearer())
            internal = await client.get("/v1/reservations/x", headers=bearer())
            return public.status_code, internal.status_code

    assert asyncio.run(fetch()) == (200, 403)


def test_external_https_urls_keep_the_system_trust_store(catalog_server: ThreadServer) -> None:
    assert mtls.verify_for("https://api.example.com/rates") is True
    assert isinstance(mtls.verify_for(config.service_url("catalog")), ssl.SSLContext)


# -- enforcement when served without TLS ------------------------------------------------------


def test_plain_http_is_refused_when_the_process_runs_as_the_service(
        catalog_db: Database, tokens: TokenFactory, bearer: Bearer, product: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_SERVICE", "catalog")  # what `charter up` sets
    app = create_catalog_app(db=catalog_db, verifier=tokens.verifier())
    with app.test_client() as client:
        answer = client.get("/v1/reservations/none", headers=bearer())
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "without a client certificate" in answer.json()["detail"]
        assert client.get(f"/v1/products/{product['id']}", headers=bearer()).status_code == 200

    monkeypatch.setenv("CHARTER_MTLS", "0")  # debugging: plain HTTP everywhere, no check
    app = create_catalog_app(db=catalog_db, verifier=tokens.verifier())
    with app.test_client() as client:
        assert client.get("/v1/reservations/none", headers=bearer()).status_code == 404


def test_in_process_clients_are_not_affected_by_default(
        catalog_app: Any, bearer: Bearer) -> None:
    with catalog_app.test_client() as client:
        assert client.get("/v1/reservations/none", headers=bearer()).status_code == 404


@pytest.mark.parametrize(("enforce", "status"), [(True, 403), (False, 404)])
def test_enforce_callers_switch(catalog_db: Database, tokens: TokenFactory, bearer: Bearer,
                                monkeypatch: pytest.MonkeyPatch, enforce: bool,
                                status: int) -> None:
    monkeypatch.setenv("CHARTER_SERVICE", "catalog")  # would refuse plain HTTP by default
    cache = TTLCache()
    app = service.create_app("catalog", api_module="services.catalog.api", db=catalog_db,
                             verifier=tokens.verifier(),
                             deps={"catalog": catalog_service(catalog_db, cache), "cache": cache},
                             enforce_callers=enforce)
    with app.test_client() as client:
        assert client.get("/v1/reservations/none", headers=bearer()).status_code == status


def test_handlers_can_read_the_caller_identity(catalog_app: Any, pki_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    @catalog_app.app.get("/whoami")
    def whoami() -> Any:
        return {"caller": mtls.request_caller()}

    port = free_port()
    monkeypatch.setenv("CATALOG_PORT", str(port))
    with ThreadServer(catalog_app, port, **uvicorn_tls_config("catalog", pki_dir)), \
            create_client(config.service_url("catalog"), identity="payments") as client:
        assert client.get("/whoami").json() == {"caller": "payments"}
