"""CORS at the gateway (``GATEWAY_CORS_ORIGINS``): preflights answered by the gateway, CORS
headers only for allowed origins, ``Vary: Origin``, never a wildcard with credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from gateway_support import EchoUpstream

from charter.config import ConfigError
from charter.problem_types import slug_of
from services.gateway.app import Gateway
from services.gateway.cors import EXPOSED_HEADERS, Cors, parse_origins
from services.gateway.settings import GatewayConfig, GatewaySettings

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example"
EVIL = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}


def _cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def _vary(r: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in r.headers.get("vary", "").split(",") if v.strip()}


@pytest.fixture
async def cors_client(make_gateway: Callable[..., Gateway]
                      ) -> AsyncIterator[httpx.AsyncClient]:
    gateway = make_gateway(GatewaySettings(rate_limit=0, cors_origins=(SHOP,),
                                           cors_allow_credentials=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        yield http
    await gateway.upstreams.aclose()


async def test_preflight_from_an_allowed_origin_is_answered_by_the_gateway(
        cors_client: httpx.AsyncClient, echo: EchoUpstream) -> None:
    r = await cors_client.options("/cart/v1/cart/items", headers={"Origin": SHOP, **PREFLIGHT})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == SHOP  # echoed, never "*"
    assert r.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-correlation-id"} <= allowed
    assert r.headers["access-control-max-age"] == "600"
    assert "origin" in _vary(r)
    assert echo.seen == []  # not forwarded


async def test_preflight_from_another_origin_is_refused_without_cors_headers(
        cors_client: httpx.AsyncClient, echo: EchoUpstream) -> None:
    r = await cors_client.options("/cart/v1/cart/items", headers={"Origin": EVIL, **PREFLIGHT})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert slug_of(r.json()) == "forbidden" and "origin" in r.json()["detail"]
    assert _cors_headers(r) == {}
    assert "origin" in _vary(r)
    assert echo.seen == []


async def test_preflight_asking_for_an_unknown_header_is_refused(
        cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.options("/catalog/v1/products", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-not-allowed"})
    assert r.status_code == 403 and "headers" in r.json()["detail"]
    assert _cors_headers(r) == {}


async def test_actual_request_from_an_allowed_origin_gets_cors_headers(
        cors_client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]],
        echo: EchoUpstream) -> None:
    r = await cors_client.get("/catalog/v1/products", headers={"Origin": SHOP, **bearer()})
    assert r.status_code == 200 and echo.last["path"] == "/v1/products"
    assert r.headers["access-control-allow-origin"] == SHOP
    assert r.headers["access-control-allow-credentials"] == "true"
    exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    assert set(EXPOSED_HEADERS) == exposed
    assert {"Location", "X-Correlation-Id", "RateLimit-Remaining", "Deprecation", "Sunset",
            "Idempotent-Replayed", "Preference-Applied"} <= exposed
    assert "origin" in _vary(r)


async def test_the_gateways_own_refusals_are_readable_cross_origin(
        cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.get("/catalog/v1/products", headers={"Origin": SHOP})  # no token
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == SHOP


async def test_other_origins_and_same_origin_requests_get_no_cors_headers(
        cors_client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    other = await cors_client.get("/catalog/v1/products", headers={"Origin": EVIL, **bearer()})
    plain = await cors_client.get("/catalog/v1/products", headers=bearer())
    for r in (other, plain):
        assert r.status_code == 200
        assert _cors_headers(r) == {}
        assert "origin" in _vary(r)  # a shared cache keeps the answers apart


async def test_wildcard_without_credentials(make_gateway: Callable[..., Gateway],
                                            bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, cors_origins=("*",)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        pre = await http.options("/catalog/v1/products",
                                 headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
        r = await http.get("/catalog/v1/products", headers={"Origin": EVIL, **bearer()})
    await gateway.upstreams.aclose()
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in pre.headers
    assert "access-control-allow-credentials" not in r.headers


async def test_without_origins_cors_is_off(client: httpx.AsyncClient) -> None:
    r = await client.options("/catalog/v1/products", headers={"Origin": SHOP, **PREFLIGHT})
    assert r.status_code == 405 and _cors_headers(r) == {}


def test_never_a_wildcard_with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
        return None

    with pytest.raises(ValueError, match="wildcard"):
        Cors(app, ("*",), methods=("GET",), allow_credentials=True)
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "0")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "*")
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_CREDENTIALS", "1")
    with pytest.raises(ConfigError, match="GATEWAY_CORS_ALLOW_CREDENTIALS"):
        GatewayConfig.load()  # refused in development mode too
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_CREDENTIALS", "0")
    assert GatewaySettings.from_env(GatewayConfig.load()).cors_origins == ("*",)


@pytest.mark.parametrize("raw, expected", [
    ("https://Shop.example, http://localhost:3000", ("https://shop.example",
                                                      "http://localhost:3000")),
    ("", ()),
    ("*", ("*",)),
    ("http://[::1]:8080", ("http://[::1]:8080",)),
])
def test_origins_are_parsed(raw: str, expected: tuple[str, ...]) -> None:
    assert parse_origins(raw) == expected


@pytest.mark.parametrize("raw", ["https://shop.example/", "shop.example", "ftp://x.example",
                                 "https://shop.example/app", "*, https://shop.example"])
def test_bad_origins_stop_the_gateway(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", raw)
    with pytest.raises(ConfigError, match="GATEWAY_CORS_ORIGINS"):
        GatewayConfig.parse()
