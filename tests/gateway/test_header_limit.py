"""The request header size limit (``GATEWAY_MAX_HEADER_BYTES``): 431 problem+json before
routing, token checks or forwarding — in-process and on a real uvicorn (httptools, which
has no header limit of its own: a 100 KB header used to reach the services)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from gateway_support import EchoUpstream

from charter.config import ConfigError
from charter.problem_types import slug_of
from services.gateway.app import Gateway
from services.gateway.settings import GatewayConfig, GatewaySettings
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio

BIG = "a" * 100_000  # a 100 KB header value


def _assert_431(r: httpx.Response) -> None:
    assert r.status_code == 431, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert slug_of(body) == "request-header-fields-too-large"
    assert body["status"] == 431 and body["title"] == "Request Header Fields Too Large"
    assert "limit is 16384" in body["detail"]
    assert r.headers["x-correlation-id"]


async def test_a_100kb_header_is_refused_before_the_token_and_the_service(
        client: httpx.AsyncClient, gateway: Gateway, echo: EchoUpstream) -> None:
    # no token at all: the size is checked first (431, not 401), nothing is forwarded
    r = await client.get("/catalog/v1/products", headers={"X-Big": BIG})
    _assert_431(r)
    assert echo.seen == []
    sample = gateway.registry.get_sample_value(
        "charter_gateway_requests_total",
        {"service": "gateway", "api": "-", "operation": "unrouted", "method": "GET",
         "status": "431"})
    assert sample == 1.0


async def test_many_small_headers_count_together(client: httpx.AsyncClient,
                                                 echo: EchoUpstream) -> None:
    headers = [(f"x-h{i}", "v" * 100) for i in range(200)]  # ≈ 22 KB in 200 fields
    r = await client.get("/catalog/v1/products", headers=headers)
    _assert_431(r)
    assert echo.seen == []


async def test_headers_under_the_limit_pass(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]],
        echo: EchoUpstream) -> None:
    r = await client.get("/catalog/v1/products",
                         headers={**bearer(), "X-Padding": "p" * 12_000})
    assert r.status_code == 200, r.text
    assert echo.last["headers"]["x-padding"] == "p" * 12_000


async def test_the_limit_is_configurable(make_gateway: Callable[..., Gateway],
                                         echo: EchoUpstream) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, max_header_bytes=2048))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get("/", headers={"X-Pad": "p" * 3000})  # the portal too
        ok = await http.get("/", headers={"X-Pad": "p" * 1000})
    await gateway.upstreams.aclose()
    assert r.status_code == 431 and "limit is 2048" in r.json()["detail"]
    assert ok.status_code == 200


def test_the_setting_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    assert GatewayConfig.parse().gateway_max_header_bytes == 16 * 1024
    monkeypatch.setenv("GATEWAY_MAX_HEADER_BYTES", "65536")
    assert GatewaySettings.from_env().max_header_bytes == 65536
    monkeypatch.setenv("GATEWAY_MAX_HEADER_BYTES", "100")
    with pytest.raises(ConfigError, match="GATEWAY_MAX_HEADER_BYTES"):
        GatewayConfig.parse()


def test_on_a_real_server_a_100kb_header_gets_431(
        make_gateway: Callable[..., Gateway], echo: EchoUpstream,
        asgi_server: Callable[..., ThreadServer]) -> None:
    server = asgi_server(make_gateway(), http="httptools")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.get("/catalog/v1/products", headers={"X-Big": BIG})
        _assert_431(r)
        # the connection stays usable for the next request
        assert http.get("/health/live").status_code == 200
    assert echo.seen == []
