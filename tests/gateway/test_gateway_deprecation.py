"""Orders v1 through the gateway: the deprecation headers on every answer (the gateway's
own refusals included, never twice), 410 after the sunset without asking the service,
v2 routed beside it, the portal's lifecycle and dates, and the policy page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from gateway_support import EchoUpstream

from charter import deprecation
from services.gateway.app import Gateway
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings
from tests.support.plugin import assert_problem

pytestmark = pytest.mark.anyio

ENTRY = deprecation.load().find("orders", "v1")
assert ENTRY is not None
ORDER = "/orders/v1/orders/3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"


def assert_headers(response: httpx.Response) -> None:
    assert ENTRY is not None
    assert response.headers.get_list("deprecation") == [
        f"@{int(ENTRY.deprecated_at.timestamp())}"]
    assert response.headers.get_list("sunset") == [deprecation.http_date(ENTRY.sunset_at)]
    (link,) = response.headers.get_list("link")
    assert '/orders/v2/ui/>; rel="successor-version"' in link
    assert '/policies/deprecation>; rel="deprecation"' in link


async def test_a_proxied_v1_answer_carries_the_headers(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    response = await client.get(ORDER, headers=bearer())
    assert response.status_code == 200  # the echo upstream
    assert_headers(response)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"scope": "catalog:read"}, 403),
])
async def test_the_gateways_own_refusals_carry_them(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]],
        headers: dict[str, str], status: int) -> None:
    sent = bearer(**headers) if headers else {}
    response = await client.get(ORDER, headers=sent)
    assert_problem(response, status)
    assert_headers(response)


async def test_a_rate_limited_v1_call_carries_them(
        make_gateway: Callable[..., Gateway],
        bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0.001, rate_burst=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as http:
        await http.get(ORDER, headers=bearer())
        response = await http.get(ORDER, headers=bearer())
    await gateway.upstreams.aclose()
    assert_problem(response, 429)
    assert_headers(response)


async def test_v2_and_other_apis_carry_none(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    for path in ("/orders/v2/orders", "/catalog/v1/products"):
        response = await client.get(path, headers=bearer())
        assert response.status_code == 200, path
        assert "deprecation" not in response.headers and "sunset" not in response.headers


async def test_after_the_sunset_the_gateway_answers_410_itself(
        gateway: Gateway, client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    assert ENTRY is not None
    gateway.retiring.clock = lambda: ENTRY.sunset_at
    before = len(echo.seen)
    response = await client.post("/orders/v1/orders", json={}, headers=bearer())
    body = assert_problem(response, 410)
    assert body["type"].endswith("/problems/api-version-sunset")
    assert_headers(response)
    assert len(echo.seen) == before  # the service was not asked
    assert (await client.get("/orders/v2/orders", headers=bearer())).status_code == 200
    gateway.retiring.clock = lambda: datetime(2027, 5, 31, tzinfo=UTC)
    assert (await client.get(ORDER, headers=bearer())).status_code == 200


async def test_v2_is_routed_with_its_swagger_ui(client: httpx.AsyncClient,
                                                routes: RouteTable) -> None:
    v2 = routes.api("orders", "v2")
    assert v2 is not None
    assert {op.operation_id for op in v2.operations} == {
        "place_order", "list_orders", "get_order", "list_order_events", "cancel_order"}
    ui = await client.get("/orders/v2/ui/")
    assert ui.status_code == 200 and "/orders/v2/openapi.json" in ui.text
    spec = (await client.get("/orders/v2/openapi.json")).json()
    assert spec["servers"][0]["url"] == "/orders/v2"
    assert spec["info"]["version"].startswith("2.")


async def test_portal_shows_lifecycle_and_sunset(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    (v1,) = [s for s in page.split("<section") if 'href="/orders/v1/ui/">Swagger' in s]
    (v2,) = [s for s in page.split("<section") if 'href="/orders/v2/ui/">Swagger' in s]
    assert "lifecycle: production" in v2 and "sunset" not in v2
    assert "lifecycle: deprecated" in v1
    assert "sunset 2027-06-01" in v1 and 'href="/orders/v2/ui/"' in v1


async def test_the_policy_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/policies/deprecation")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert "Minimum notice" in response.text
