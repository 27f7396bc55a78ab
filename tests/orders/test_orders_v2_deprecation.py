"""Orders v1 is deprecated (governance/deprecation.yaml): every v1 answer carries the
RFC 9745/8594 headers, calls are counted per client, and after the sunset v1 is 410 Gone
while v2 keeps answering. The service's clock is moved, never the real one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import Auth, keyed
from prometheus_client.parser import text_string_to_metric_families

from charter import deprecation
from charter.db import Database
from charter.testing import TokenFactory
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings
from services.orders.app import create_app
from tests.support.clocks import SettableClock
from tests.support.plugin import assert_problem
from tests.support.servers import ThreadServer

ENTRY = deprecation.load().find("orders", "v1")
assert ENTRY is not None, "orders v1 must be listed in governance/deprecation.yaml"


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 12, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
def app(db: Database, tokens: TokenFactory, catalog: InMemoryCatalog, cart: InMemoryCart,
        payments: InMemoryPayments, clock: SettableClock) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=cart,
                      payments=payments,
                      clock=clock.now)


def assert_deprecation_headers(response: Any) -> None:
    assert ENTRY is not None
    assert response.headers["Deprecation"] == f"@{int(ENTRY.deprecated_at.timestamp())}"
    assert parsedate_to_datetime(response.headers["Sunset"]) == ENTRY.sunset_at
    link = response.headers["Link"]
    assert '/orders/v2/ui/>; rel="successor-version"' in link
    assert '/policies/deprecation>; rel="deprecation"' in link


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/v1/orders"),
    ("get", "/v1/orders/3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"),  # 404
    ("post", "/v1/orders"),  # 400: no body
    ("get", "/v1/openapi.json"),
])
def test_every_v1_answer_carries_the_deprecation_headers(
        client: Any, auth: Auth, method: str, path: str) -> None:
    response = getattr(client, method)(path, headers=keyed(auth("alice")))
    assert_deprecation_headers(response)


def test_even_a_refused_token_gets_them(client: Any) -> None:
    response = client.get("/v1/orders")
    assert response.status_code == 401
    assert_deprecation_headers(response)


def test_v2_and_probes_carry_none(client: Any, auth: Auth) -> None:
    for path in ("/v2/orders", "/health/live", "/metrics"):
        response = client.get(path, headers=auth("alice"))
        assert response.status_code == 200, path
        assert "Deprecation" not in response.headers and "Sunset" not in response.headers


def test_calls_are_counted_per_client_id(client: Any, auth: Auth) -> None:
    client.get("/v1/orders", headers=auth("alice", client_id="shop-web"))
    client.get("/v1/orders", headers=auth("alice", client_id="shop-web"))
    client.get("/v1/orders", headers=auth("alice", client_id="legacy-app"))
    client.get("/v2/orders", headers=auth("alice", client_id="new-app"))
    counted = {
        (s.labels["client_id"], s.labels["operation"], s.labels["version"]): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name == "charter_deprecated_calls"
        for s in family.samples if s.name.endswith("_total")
    }
    assert counted == {("shop-web", "list_orders", "v1"): 2.0,
                       ("legacy-app", "list_orders", "v1"): 1.0}


def test_after_the_sunset_v1_is_gone_and_v2_answers(
        client: Any, auth: Auth, clock: SettableClock) -> None:
    assert ENTRY is not None
    assert client.get("/v1/orders", headers=auth("alice")).status_code == 200
    clock.current = ENTRY.sunset_at  # the sunset instant itself is already past
    response = client.get("/v1/orders", headers=auth("alice"))
    body = assert_problem(response, 410)
    assert body["type"].endswith("/problems/api-version-sunset")
    assert body["successor"].endswith("/orders/v2/ui/")
    assert_deprecation_headers(response)
    assert_problem(client.post("/v1/orders", json={}, headers=keyed(auth("alice"))), 410)
    assert client.get("/v2/orders", headers=auth("alice")).status_code == 200


def test_direct_and_through_the_gateway_alike(
        app: Any, tokens: TokenFactory, auth: Auth,
        asgi_server: Callable[..., ThreadServer]) -> None:
    """The real orders service behind a real gateway: the same headers once, both ways."""
    orders = asgi_server(app)
    gateway = asgi_server(create_gateway(
        upstreams={"orders": orders.url}, verifier=tokens.verifier(),
        settings=GatewaySettings(rate_limit=0), access_log=False))
    with httpx.Client() as http:
        direct = http.get(f"{orders.url}/v1/orders", headers=auth("alice"))
        proxied = http.get(f"{gateway.url}/orders/v1/orders", headers=auth("alice"))
        v2 = http.get(f"{gateway.url}/orders/v2/orders", headers=auth("alice"))
    assert direct.status_code == proxied.status_code == v2.status_code == 200
    for name in ("deprecation", "sunset", "link"):
        assert direct.headers.get_list(name) == proxied.headers.get_list(name), name
        assert len(proxied.headers.get_list(name)) == 1
    assert "deprecation" not in v2.headers
