"""Unit tests: identity extraction, the TLS scope extension, URLs, uvicorn options, rules."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from charter import config, specs
from charter.security import mtls
from charter.serve import PROTOCOL, service_env, uvicorn_tls_args, uvicorn_tls_config
from charterctl import pki


def der_of(pki_dir: Path, identity: str) -> bytes:
    cert = x509.load_pem_x509_certificate((pki_dir / f"{identity}.pem").read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


class FakeSSLObject:
    def __init__(self, der: bytes | None, version: str = "TLSv1.3") -> None:
        self.der = der
        self._version = version

    def getpeercert(self, binary_form: bool = False) -> Any:
        assert binary_form
        return self.der

    def version(self) -> str:
        return self._version


# -- identity extraction ----------------------------------------------------------------------


def test_identity_is_the_certificate_common_name(pki_dir: Path) -> None:
    info = mtls.tls_extension(der_of(pki_dir, "orders"), "TLSv1.3")
    assert info["client_cert_identity"] == "orders"
    assert info["client_cert_name"] == "CN=orders,O=Charter"
    assert info["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert info["tls_version"] == 0x0304
    assert info["client_cert_error"] is None


def test_no_certificate_no_identity() -> None:
    info = mtls.tls_extension(None, "TLSv1.2")
    assert info["client_cert_identity"] is None and info["client_cert_chain"] == []
    assert info["tls_version"] == 0x0303
    broken = mtls.tls_extension(b"not der")
    assert broken["client_cert_identity"] is None and broken["client_cert_error"]


def test_extension_from_the_transport_ssl_object(pki_dir: Path) -> None:
    assert mtls.tls_extension_from_ssl_object(None) is None  # plain TCP
    info = mtls.tls_extension_from_ssl_object(FakeSSLObject(der_of(pki_dir, "cart")))
    assert info is not None and info["client_cert_identity"] == "cart"
    anonymous = mtls.tls_extension_from_ssl_object(FakeSSLObject(None))
    assert anonymous is not None and anonymous["client_cert_identity"] is None


def test_caller_identity_reads_the_scope() -> None:
    assert mtls.caller_identity({}) is None
    assert mtls.caller_identity({"extensions": {}}) is None
    assert mtls.caller_identity({"extensions": {"tls": {"client_cert_identity": None}}}) is None
    scope = {"extensions": {"tls": {"client_cert_identity": "orders"}}}
    assert mtls.caller_identity(scope) == "orders"


def test_request_caller_inside_a_flask_request() -> None:
    from flask import Flask

    assert mtls.request_caller() is None  # no request
    app = Flask("probe")
    scope = {"type": "http", "extensions": {"tls": {"client_cert_identity": "orders"}}}
    with app.test_request_context("/", environ_base={"asgi.scope": scope}):
        assert mtls.request_caller() == "orders"
    with app.test_request_context("/"):
        assert mtls.request_caller() is None


def test_scope_app_adds_the_extension_to_each_request() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    wrapped = mtls.TLSScopeApp(app, {"client_cert_identity": "orders"})

    async def run() -> None:
        await wrapped({"type": "http"}, None, None)  # type: ignore[arg-type]
        await wrapped({"type": "http", "extensions": {"other": {}}}, None, None)  # type: ignore[arg-type]
        await wrapped({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    asyncio.run(run())
    assert mtls.caller_identity(seen[0]) == "orders"
    assert seen[1]["extensions"]["other"] == {} and mtls.caller_identity(seen[1]) == "orders"
    assert "extensions" not in seen[2]
    seen[0]["extensions"]["tls"]["client_cert_identity"] = "tampered"
    assert wrapped.tls["client_cert_identity"] == "orders"  # each request gets a copy


# -- declarations and rules -------------------------------------------------------------------


def test_catalog_reservations_are_internal_to_orders() -> None:
    callers = mtls.internal_callers(specs.load("catalog"))
    assert callers == {op: frozenset({"orders"}) for op in (
        "create_reservation", "get_reservation", "commit_reservation", "release_reservation",
        "return_reservation")}


def test_malformed_declarations_are_refused() -> None:
    def spec(value: Any, op_id: str | None = "op") -> dict[str, Any]:
        operation: dict[str, Any] = {"x-internal-callers": value}
        if op_id:
            operation["operationId"] = op_id
        return {"paths": {"/x": {"get": operation, "parameters": []}}}

    assert mtls.internal_callers(spec(["orders", "payments"])) == {
        "op": frozenset({"orders", "payments"})}
    assert mtls.internal_callers(spec([])) == {"op": frozenset()}  # nobody
    for bad in ("orders", [1], None):
        with pytest.raises(ValueError):
            mtls.internal_callers(spec(bad))
    with pytest.raises(ValueError):
        mtls.internal_callers(spec(["orders"], op_id=None))


def test_enforcement_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mtls.enforcement("catalog", True) == (True, True)
    assert mtls.enforcement("catalog", False) == (False, False)
    assert mtls.enforcement("catalog", None) == (True, False)  # TLS requests only
    monkeypatch.setenv("CHARTER_SERVICE", "catalog")
    assert mtls.enforcement("catalog", None) == (True, True)
    assert mtls.enforcement("cart", None) == (True, False)
    monkeypatch.setenv("CHARTER_MTLS", "0")
    assert mtls.enforcement("catalog", None) == (False, False)


# -- configuration and URLs ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "false", "off", "no"])
def test_mtls_off_means_plain_http(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CHARTER_MTLS", value)
    assert not config.mtls_enabled()
    assert config.service_url("catalog") == "http://127.0.0.1:8101"
    assert mtls.is_mtls_url("https://127.0.0.1:8101") is False
    assert uvicorn_tls_args("catalog") == []


def test_service_urls_with_mtls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_MTLS")
    assert config.mtls_enabled()  # the default
    for name in ("catalog", "cart", "orders", "payments", "exchange", "loyalty",
                 "notifications"):
        assert config.service_url(name) == f"https://127.0.0.1:{config.PORTS[name]}"
    assert config.service_url("auth") == "http://127.0.0.1:8090"
    assert config.service_url("gateway") == "http://127.0.0.1:8080"
    monkeypatch.setenv("ORDERS_URL", "https://orders.internal:9443/")
    assert config.service_url("orders") == "https://orders.internal:9443"
    assert mtls.is_mtls_url("https://orders.internal:9443/v1/orders")
    assert mtls.is_mtls_url("https://127.0.0.1:8101/v1/products")
    assert not mtls.is_mtls_url("http://127.0.0.1:8101/v1/products")
    assert not mtls.is_mtls_url("https://127.0.0.1:8090/")  # auth is not an mTLS service
    assert not mtls.is_mtls_url("https://api.example.com/")
    assert not mtls.is_mtls_url("not a url")


def test_client_context_presents_the_identity_and_trusts_only_the_ca(
        pki_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = mtls.client_ssl_context("orders", pki_dir)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        ((("organizationName", "Charter"),), (("commonName", pki.CA_NAME),))]
    assert mtls.client_ssl_context("orders", pki_dir) is ctx  # cached
    assert mtls.current_identity() == "charter-cli"
    monkeypatch.setenv("CHARTER_SERVICE", "cart")
    assert mtls.current_identity() == "cart"
    assert mtls.client_ssl_context() is mtls.client_ssl_context("cart", pki_dir)


def test_missing_certificates_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="charter pki init"):
        mtls.client_ssl_context("orders", tmp_path)
    with pytest.raises(config.ConfigError, match="CHARTER_PKI_DIR"):
        uvicorn_tls_args("catalog", tmp_path)


def test_uvicorn_options(pki_dir: Path) -> None:
    assert uvicorn_tls_args("catalog") == [
        "--ssl-keyfile", str(pki_dir / "catalog-key.pem"),
        "--ssl-certfile", str(pki_dir / "catalog.pem"),
        "--ssl-ca-certs", str(pki_dir / "ca.pem"),
        "--ssl-cert-reqs", "2",
        "--http", PROTOCOL,
    ]
    assert uvicorn_tls_args("auth") == [] and uvicorn_tls_args("gateway") == []
    assert uvicorn_tls_config("catalog")["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert uvicorn_tls_config("gateway") == {}
    assert uvicorn_tls_config("gateway", force=True)["ssl_certfile"].endswith("gateway.pem")
    assert service_env("orders") == {"CHARTER_SERVICE": "orders"}
