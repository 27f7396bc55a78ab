"""The dependency manifest (governance/dependencies.yaml) against the specs and the code.

The code side is observed, not read: each service's own HTTP adapters (built by its app
factory's ``default_*`` functions, token providers included) are pointed at one recording
stub server and every method of the ports they implement is called. Each recorded request
is mapped through the specs (method + path template) to an operationId; the token it
carried says whether it was the service's own call (a token of the service's client) or a
call on a user's behalf (the user's token, forwarded). Both sets must equal the manifest.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from charter import dependencies
from charter.dependencies import Call, Manifest, ManifestError
from services.cart import app as cart_app
from services.cart.ports import CatalogPort as CartCatalogPort
from services.orders import app as orders_app
from services.orders.ports import (
    CartPort,
    CatalogPort,
    CheckoutPaymentsPort,
    ExchangePort,
    PaymentsPort,
)
from tests.support.stub_server import Reply, Seen, StubServer

APIS = ("catalog", "cart", "orders", "payments", "exchange", "loyalty", "notifications")
USER_AUTHORIZATION = "Bearer user-token-of-alice"

# service → [(app-factory function, port it implements, {port method: arguments})]
Driver = tuple[Callable[[], Any], type, dict[str, tuple[Any, ...]]]
DRIVERS: dict[str, list[Driver]] = {
    "cart": [
        (cart_app.default_catalog, CartCatalogPort,
         {"get_product": (1,), "get_stock": (1,)}),
    ],
    "orders": [
        (orders_app.default_catalog, CatalogPort,
         {"get_product": (1,), "reserve": ("order-1", [(1, 2)], "key-0001"),
          "commit": ("order-1", "key-0002"), "release": ("order-1", "key-0003"),
          "return_stock": ("order-1", "key-0009")}),
        (orders_app.default_cart, CartPort,
         {"get_cart": (USER_AUTHORIZATION, "user-1"),
          "clear_cart": (USER_AUTHORIZATION, "user-1")}),
        (orders_app.default_payments, PaymentsPort, {"get_payment": ("pay-1",)}),
        (orders_app.default_payments, CheckoutPaymentsPort,
         {"authorize": ("order-1", "user-1", 990, "EUR", "tok_visa", "key-0005"),
          "capture": ("pay-1", "key-0006"), "void": ("pay-1", "key-0007"),
          "refund": ("pay-1", "key-0008", "cancelled")}),
        (orders_app.LazyExchange, ExchangePort, {"convert": (990, "USD", "EUR")}),
    ],
}


def port_methods(port: type) -> set[str]:
    """The operations of a port (protocol or ABC), ``close`` aside."""
    return {name for name, value in vars(port).items()
            if callable(value) and not name.startswith("_") and name != "close"}


def respond(seen: Seen) -> Reply:
    """Tokens for the token endpoint; 409 "Reservation exists" (to exercise the read-back
    of an existing reservation); 404 problem for everything else."""
    path = urlsplit(seen.path).path
    if path == "/auth/oauth/token":
        client = base64.b64decode(seen.headers["authorization"].split()[1]).decode()
        return 200, {"access_token": f"token-of-{client.split(':')[0]}",
                     "token_type": "Bearer", "expires_in": 300}
    if seen.method == "POST" and path == "/catalog/v1/reservations":
        return 409, {"type": "/problems/reservation-exists", "title": "Reservation exists",
                     "status": 409}
    return 404, {"title": "Not Found", "status": 404}


def route_table() -> list[tuple[str, str, re.Pattern[str], dependencies.Operation]]:
    """(api, method, /<api>/<version><path> regex, operation) for every spec operation."""
    table = []
    for api in APIS:
        for version in ("v1", "v2"):
            try:
                ops = dependencies.spec_operations(api, version)
            except ManifestError:
                continue
            for op in ops.values():
                pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path))
                table.append((api, op.method, re.compile(f"^/{api}/{version}{pattern}$"), op))
    return table


def to_call(seen: Seen, table: list[Any]) -> Call:
    path = urlsplit(seen.path).path
    for api, method, regex, op in table:
        if method == seen.method and regex.match(path):
            return Call(api=api, operation_id=op.operation_id, version=op.version)
    raise AssertionError(f"{seen.method} {path} is no operation of any spec")


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    with StubServer(respond) as server:
        monkeypatch.setenv("CHARTER_MTLS", "0")
        monkeypatch.setenv("AUTH_TOKEN_URL", f"{server.url}/auth/oauth/token")
        for api in APIS:
            monkeypatch.setenv(f"{api.upper()}_URL", f"{server.url}/{api}")
            monkeypatch.setenv(f"{api.upper()}_CLIENT_SECRET", f"secret-of-{api}-for-tests")
        yield server


def record(service: str, stub: StubServer) -> tuple[set[Call], set[Call], set[str]]:
    """Drive ``service``'s adapters: (own calls, calls on a user's behalf, token scopes)."""
    stub.seen.clear()
    for factory, port, calls in DRIVERS[service]:
        assert set(calls) == port_methods(port), f"{port.__name__}: drive every method"
        adapter = factory()
        try:
            for method, args in calls.items():
                # The stub's 404s make some methods raise: only the requests count here.
                with contextlib.suppress(Exception):
                    getattr(adapter, method)(*args)
        finally:
            adapter.close()
    table = route_table()
    own: set[Call] = set()
    for_user: set[Call] = set()
    scopes: set[str] = set()
    for seen in stub.seen:
        if urlsplit(seen.path).path == "/auth/oauth/token":
            form = parse_qs(seen.body.decode())
            assert form["grant_type"] == ["client_credentials"]
            assert base64.b64decode(seen.headers["authorization"].split()[1]).decode() \
                == f"{service}:secret-of-{service}-for-tests"
            scopes.add(form["scope"][0])
            continue
        authorization = seen.headers.get("authorization")
        if authorization == f"Bearer token-of-{service}":
            own.add(to_call(seen, table))
        elif authorization == USER_AUTHORIZATION:
            for_user.add(to_call(seen, table))
        else:
            raise AssertionError(f"{seen.method} {seen.path} sent with {authorization!r}")
    return own, for_user, scopes


@pytest.mark.parametrize("service", sorted(DRIVERS))
def test_the_manifest_lists_exactly_what_the_adapters_call(
        service: str, stub: StubServer) -> None:
    own, for_user, scopes = record(service, stub)
    declared = dependencies.load().service(service)
    assert own == set(declared.calls)
    assert for_user == set(declared.on_behalf_of_user)
    # One token, of the service's own client, with exactly the derived scopes.
    assert scopes == {dependencies.load().client_scope(service)}


def test_every_service_with_calls_is_driven() -> None:
    manifest = dependencies.load()
    assert {name for name, deps in manifest.services.items()
            if deps.calls or deps.on_behalf_of_user} == set(DRIVERS)


def test_the_manifest_agrees_with_the_specs() -> None:
    manifest = dependencies.load()  # raises on any disagreement
    assert dependencies.check(manifest) == []
    assert set(manifest.services) == set(APIS) | {"gateway"}
    assert manifest.service("gateway").proxy


def test_client_scopes_are_derived_from_the_specs() -> None:
    manifest = dependencies.load()
    assert manifest.clients() == ("cart", "orders")
    assert manifest.client_scopes("cart") == ("catalog:read",)
    assert manifest.client_scopes("orders") == (
        "catalog:read", "catalog:reserve", "exchange:read", "payments:read",
        "payments:write")
    # On-behalf-of-user calls give the service no scope of their own.
    assert not any(s.startswith("cart:") for s in manifest.client_scopes("orders"))
    assert manifest.client_scopes("catalog") == ()


def manifest_of(text: str) -> Manifest:
    return dependencies.parse(yaml.safe_load(text))


@pytest.mark.parametrize(("text", "error"), [
    ("services: {cart: {calls: [{api: catalog, operationId: no_such_op}]}}",
     "no such operationId"),
    ("services: {cart: {calls: [{api: nowhere, operationId: get_product}]}}",
     "no spec nowhere v1"),
    ("services: {cart: {calls: [{api: catalog, operationId: create_reservation}]}}",
     "cart is not in its x-internal-callers"),
    ("services: {orders: {on_behalf_of_user: [{api: loyalty, operationId: create_award}]}}",
     "cannot be called with a user's token"),
    ("services: {cart: {calls: [{api: catalog, operationId: get_product},"
     " {api: catalog, operationId: get_product}]}}", "duplicate entries"),
    ("services: {orders: {calls: [{api: cart, operationId: get_cart}],"
     " on_behalf_of_user: [{api: cart, operationId: get_cart}]}}", "declared both"),
    ("services: {billing: {}}", "billing: not a platform component"),
    ("services: {cart: {calls: [{api: cart, operationId: get_cart}]}}", "calls its own API"),
])
def test_disagreements_with_the_specs_are_reported(text: str, error: str) -> None:
    problems = dependencies.check(manifest_of(text))
    assert any(error in p for p in problems), problems


@pytest.mark.parametrize("text", [
    "services: {cart: {calls: [{api: catalog}]}}",
    "services: {cart: {calls: [{api: catalog, operationId: get_product, version: 1}]}}",
    "services: {cart: {depends: []}}",
    "services: [cart]",
])
def test_malformed_manifests_are_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="malformed"):
        manifest_of(text)


def test_unknown_service_has_no_entry() -> None:
    with pytest.raises(ManifestError, match="not in the dependency manifest"):
        dependencies.load().service("billing")
