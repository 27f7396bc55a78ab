"""Correlation ids, W3C traceparent, forwarding headers and hop-by-hop stripping."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from gateway_support import EchoUpstream

from charter.security.client_ip import parse_networks
from charter.testing import TokenFactory
from services.gateway.app import Gateway
from services.gateway.headers import traceparent
from services.gateway.settings import GatewaySettings
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
URL = "/catalog/v1/products"


async def test_correlation_id_is_propagated_and_echoed(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    r = await client.get(URL, headers={**bearer(), "X-Correlation-Id": "order-42.try:1"})
    assert r.headers["x-correlation-id"] == "order-42.try:1"
    assert echo.last["headers"]["x-correlation-id"] == "order-42.try:1"


async def test_correlation_id_is_generated_when_absent_or_invalid(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    r = await client.get(URL, headers=bearer())
    cid = r.headers["x-correlation-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert echo.last["headers"]["x-correlation-id"] == cid
    r = await client.get(URL, headers={**bearer(), "X-Correlation-Id": "bad id<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-correlation-id"])
    # Refusals made by the gateway itself carry it too.
    r = await client.get(URL, headers={"X-Correlation-Id": "refused-1"})
    assert r.status_code == 401 and r.headers["x-correlation-id"] == "refused-1"


async def test_valid_traceparent_keeps_trace_with_a_new_span(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await client.get(URL, headers={**bearer(), "traceparent": incoming,
                                   "tracestate": "vendor=abc"})
    sent = TRACEPARENT.match(echo.last["headers"]["traceparent"])
    assert sent is not None
    assert sent.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert sent.group(2) != "00f067aa0ba902b7" and sent.group(3) == "01"
    assert echo.last["headers"]["tracestate"] == "vendor=abc"


@pytest.mark.parametrize("incoming", [
    None,
    "garbage",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
])
async def test_missing_or_invalid_traceparent_starts_a_new_trace(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]], incoming: str | None) -> None:
    headers = bearer() | ({"traceparent": incoming} if incoming else {})
    await client.get(URL, headers=headers)
    sent = TRACEPARENT.match(echo.last["headers"]["traceparent"])
    assert sent is not None and sent.group(3) == "01"
    assert sent.group(1) != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert sent.group(1) != "0" * 32


def test_future_traceparent_versions_are_accepted() -> None:
    trace_id, out = traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-xyz")
    assert trace_id == b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert out.startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-") and out.endswith(b"-00")


async def test_forwarding_headers(client: httpx.AsyncClient, echo: EchoUpstream,
                                  bearer: Callable[..., dict[str, str]]) -> None:
    await client.get(URL, headers=bearer())
    h = echo.last["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "gateway.test"
    assert h["forwarded"] == 'for=127.0.0.1;proto=http;host="gateway.test"'
    assert h["host"] == echo.url.removeprefix("http://")  # the upstream's own host
    # The caller is no trusted proxy: its chain is its own say-so and is not passed on.
    await client.get(URL, headers={**bearer(), "X-Forwarded-For": "203.0.113.7",
                                   "Forwarded": "for=203.0.113.7"})
    h = echo.last["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["forwarded"] == 'for=127.0.0.1;proto=http;host="gateway.test"'


async def test_forwarding_chain_is_kept_from_a_trusted_proxy(
        make_gateway: Callable[..., Gateway], echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0,
                                           trusted_proxies=parse_networks("10.0.0.0/8")))
    for peer, xff, forwarded in [
        ("10.1.1.1", "203.0.113.7, 10.2.2.2", "for=203.0.113.7, for=10.2.2.2"),  # trusted
        ("198.51.100.4", "", ""),                                                 # not
    ]:
        transport = httpx.ASGITransport(gateway, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            await http.get(URL, headers={**bearer(), "X-Forwarded-For": "203.0.113.7, 10.2.2.2",
                                         "Forwarded": "for=203.0.113.7, for=10.2.2.2"})
        h = echo.last["headers"]
        assert h["x-forwarded-for"] == ", ".join(filter(None, [xff, peer]))
        assert h["forwarded"] == ", ".join(filter(None, [
            forwarded, f'for={peer};proto=http;host="gw"']))
    await gateway.upstreams.aclose()


async def test_hop_by_hop_request_headers_are_stripped(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    await client.get(URL, headers={
        **bearer(),
        "Connection": "keep-alive, X-Client-Hop",
        "X-Client-Hop": "private",
        "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "websocket",
        "X-End-To-End": "kept",
    })
    h = echo.last["headers"]
    for name in ("x-client-hop", "keep-alive", "proxy-authorization", "proxy-connection",
                 "te", "trailer", "upgrade"):
        assert name not in h, name
    assert h.get("connection", "keep-alive") == "keep-alive"  # only the gateway's own
    assert h["x-end-to-end"] == "kept"


async def test_hop_by_hop_response_headers_are_stripped(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    r = await client.get(URL, headers={**bearer(), "x-test-hop": "1"})
    assert r.status_code == 200
    for name in ("x-internal-hop", "keep-alive", "proxy-authenticate", "upgrade"):
        assert name not in r.headers, name
    assert r.headers["x-kept"] == "yes"
    assert "date" not in r.headers and "server" not in r.headers  # uvicorn adds its own


@pytest.mark.parametrize(("sent", "seen"), [
    ("/v1/products/7", "/catalog/v1/products/7"),          # the service's own mount
    ("/v2", "/catalog/v2"),
    ("https://elsewhere.example/v1/x", "https://elsewhere.example/v1/x"),
    ("/catalog/v1/products/7", "/catalog/v1/products/7"),  # already public
    ("/version/1", "/version/1"),
])
async def test_location_is_rewritten_to_the_public_path(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]],
        sent: str, seen: str) -> None:
    """A 201/202 ``Location`` must be followable through the gateway (regression: v2's
    ``POST /orders/v2/orders`` answered ``Location: /v2/orders/<id>``)."""
    r = await client.get(URL, headers={**bearer(), "x-test-location": sent})
    assert r.headers["location"] == seen


def test_through_a_real_gateway_server(make_gateway: Callable[..., Gateway],
                                       echo: EchoUpstream, tokens: TokenFactory,
                                       asgi_server: Callable[..., ThreadServer]) -> None:
    """The gateway under uvicorn: one Date/Server, no hop-by-hop, a streamed large body."""
    server = asgi_server(make_gateway())
    token = tokens.token(scope="catalog:read")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.get(URL, headers={"Authorization": f"Bearer {token}", "x-test-hop": "1"})
        assert r.status_code == 200
        assert len(r.headers.get_list("date")) == 1
        assert len(r.headers.get_list("server")) == 1
        assert "x-internal-hop" not in r.headers and "proxy-authenticate" not in r.headers
        assert r.headers["x-kept"] == "yes"
        size = 3 * 1024 * 1024 + 5
        r = http.get(URL, headers={"Authorization": f"Bearer {token}",
                                   "x-test-big": str(size)})
        assert r.status_code == 200 and len(r.content) == size
        assert echo.last["client"][0] == "127.0.0.1"
