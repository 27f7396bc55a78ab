"""The JWT check at the gateway, on every operation of every spec.

No token, a malformed one, a bad signature, an expired one, the wrong audience or issuer,
an ID token instead of an access token → 401 with ``WWW-Authenticate: Bearer``; a valid
token without the operation's scope → 403; a valid token with it → forwarded with the
``Authorization`` header unchanged (the service verifies it again — zero trust).
Internal operations (``x-internal-callers``) are refused with 403 whatever the token,
unless the gateway is configured to expose them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from gateway_support import EchoUpstream, example_path

from charter.testing import TokenFactory
from services.gateway.app import Gateway
from services.gateway.routes import Operation, RouteTable
from services.gateway.settings import GatewaySettings
from tests.support.token_matrix import TokenMatrix

pytestmark = pytest.mark.anyio


def operations(routes: RouteTable, internal: bool = False) -> list[Operation]:
    """The public operations (or, with ``internal``, every operation)."""
    return [op for api in routes.apis for op in api.operations
            if internal or not op.internal_callers]


def url_of(op: Operation) -> str:
    return f"/{op.api}/{op.version}{example_path(op.path)}"


def test_every_operation_requires_a_scope(routes: RouteTable) -> None:
    """Every current operation is protected (the gateway would pass a public one through)."""
    for op in operations(routes):
        assert op.security, op.operation_id


@dataclass(frozen=True)
class Scoped:
    """The token matrix's view of a gateway operation."""

    operation_id: str
    scopes: frozenset[str]


@pytest.mark.parametrize("expose_internal", [False, True])
async def test_token_matrix_on_every_operation(
        make_gateway: Callable[..., Gateway], routes: RouteTable, tokens: TokenFactory,
        token_matrix: TokenMatrix, echo: EchoUpstream, expose_internal: bool) -> None:
    """The shared matrix (tests/support/token_matrix.py): 401 bodies identical to the
    services', 403 for a token lacking the scope, on every operation of every spec."""
    gateway = make_gateway(GatewaySettings(rate_limit=0, expose_internal=expose_internal))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(gateway), base_url="http://gw")
    failures: list[str] = []
    for op in operations(routes, internal=expose_internal):
        url = url_of(op)

        async def call(headers: dict[str, str], op: Operation = op,
                       url: str = url) -> httpx.Response:
            return await client.request(op.method, url, headers=headers)

        try:
            await token_matrix.arun(Scoped(op.operation_id, frozenset(op.required_scopes)),
                                    call)
        except AssertionError as exc:
            failures.append(str(exc))
        r = await call({"Authorization": f"Bearer {tokens.token(scope='unrelated:scope')}"})
        if "insufficient_scope" not in r.headers.get("www-authenticate", ""):
            failures.append(f"{op.operation_id}: 403 without insufficient_scope challenge")
    await client.aclose()
    await gateway.upstreams.aclose()
    assert failures == []
    assert echo.seen == []  # no refused request reached a service


async def test_internal_operations_are_not_exposed(
        client: httpx.AsyncClient, routes: RouteTable, tokens: TokenFactory,
        echo: EchoUpstream) -> None:
    internal = [op for op in operations(routes, internal=True) if op.internal_callers]
    assert {"create_reservation", "commit_reservation"} <= {o.operation_id for o in internal}
    for op in internal:
        token = tokens.token(sub="orders", scope=" ".join(op.required_scopes),
                             role="service")
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            r = await client.request(op.method, url_of(op), headers=headers)
            assert r.status_code == 403, op.operation_id
            assert r.headers["content-type"] == "application/problem+json"
            assert "internal" in r.json()["detail"]
    assert echo.seen == []


async def test_valid_token_is_forwarded_unchanged(
        make_gateway: Callable[..., Gateway], routes: RouteTable, tokens: TokenFactory,
        echo: EchoUpstream) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, expose_internal=True))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(gateway), base_url="http://gw")
    for op in operations(routes, internal=True):
        token = tokens.token(scope=" ".join(op.required_scopes))
        body = b'{"x": 1}' if op.method in ("POST", "PUT", "PATCH") else None
        r = await client.request(op.method, url_of(op), content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert r.status_code == 200, (op.operation_id, r.text)
        seen = echo.last
        assert seen["method"] == op.method
        assert seen["path"] == f"/{op.version}{example_path(op.path)}"
        assert seen["headers"]["authorization"] == f"Bearer {token}"
        assert seen["body_size"] == (len(body) if body else 0)
    await client.aclose()
    await gateway.upstreams.aclose()


async def test_upstream_answers_pass_through(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    """The service's own refusals (e.g. its 403/404) reach the client as they are."""
    r = await client.get("/cart/v1/cart", headers={**bearer("cart:read"),
                                                   "x-test-status": "404"})
    assert r.status_code == 404
    assert r.json()["path"] == "/v1/cart"


async def test_verification_runs_once_per_token(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory) -> None:
    """A validated token is cached: the second request does not verify again."""
    verifier = tokens.verifier()
    calls = 0
    original = verifier.verify

    def counting(token: str) -> dict[str, object]:
        nonlocal calls
        calls += 1
        return original(token)

    verifier.verify = counting  # type: ignore[method-assign]
    gateway = make_gateway(verifier=verifier)
    headers = {"Authorization": f"Bearer {tokens.token(scope='catalog:read')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        for _ in range(3):
            assert (await http.get("/catalog/v1/products", headers=headers)).status_code == 200
    await gateway.upstreams.aclose()
    assert calls == 1
