"""Rate limits, body size limit, upstream failures and timeouts: never a hang, always
problem+json, and all of it visible in the metrics."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from gateway_support import EchoUpstream

from charter.config import ConfigError
from charter.security.client_ip import parse_networks
from charter.testing import TokenFactory
from services.gateway.app import Gateway
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings
from tests.support.servers import free_port

pytestmark = pytest.mark.anyio
URL = "/catalog/v1/products"


def asgi_client(gateway: Gateway, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(gateway, client=(ip, 5000)),
                             base_url="http://gw")


# --- rate limits ----------------------------------------------------------------------
def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("a")
    assert (refused.remaining, refused.retry_after, refused.reset) == (0, 1, 2)
    assert limiter.take("b").allowed  # another client has its own bucket
    now[0] += 0.5  # one request's worth
    assert limiter.take("a").allowed and not limiter.take("a").allowed
    now[0] += 60
    full = limiter.take("a")
    assert full.allowed and full.remaining == 2 and full.reset == 1


def test_bucket_count_is_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=10)
    for i in range(100):
        limiter.take(f"client-{i}")
    assert len(limiter._buckets) == 10


async def test_rate_limit_429_with_headers_then_refill(
        make_gateway: Callable[..., Gateway], tokens: TokenFactory,
        echo: EchoUpstream) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=2, rate_burst=3))
    now = [1000.0]  # the limiter's clock, moved by the test instead of sleeping
    gateway.limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    alice = {"Authorization": f"Bearer {tokens.token(sub='alice', scope='catalog:read')}"}
    bob = {"Authorization": f"Bearer {tokens.token(sub='bob', scope='catalog:read')}"}
    async with asgi_client(gateway) as http:
        answers = [await http.get(URL, headers=alice) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
        assert answers[0].headers["ratelimit-limit"] == "3"
        assert answers[0].headers["ratelimit-policy"] == "3;w=2"
        assert "ratelimit-reset" in answers[0].headers
        refused = await http.get(URL, headers=alice)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) >= 1
        # Another client (same IP, other token subject) is not affected.
        assert (await http.get(URL, headers=bob)).status_code == 200
        now[0] += 0.6  # 2/s refills 1.2 requests
        assert (await http.get(URL, headers=alice)).status_code == 200
        metrics = (await http.get("/metrics")).text
    await gateway.upstreams.aclose()
    assert 'charter_gateway_rate_limited_total{api="catalog",service="gateway"} 1.0' in metrics
    assert len(echo.seen) == 5


async def test_anonymous_and_bad_tokens_are_limited_by_ip(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=1, rate_burst=2))
    async with asgi_client(gateway, ip="198.51.100.1") as http:
        codes = [(await http.get(URL, headers={"Authorization": "Bearer junk"})).status_code
                 for _ in range(3)]
        assert codes == [401, 401, 429]
    async with asgi_client(gateway, ip="198.51.100.2") as http:
        assert (await http.get(URL)).status_code == 401  # other IP, own bucket
    await gateway.upstreams.aclose()


async def test_spoofed_forwarded_for_does_not_change_the_bucket(
        make_gateway: Callable[..., Gateway]) -> None:
    """No trusted proxy (the default): the bucket is the TCP peer's, whatever the caller
    writes in X-Forwarded-For / Forwarded — on the loopback too."""
    gateway = make_gateway(GatewaySettings(rate_limit=1, rate_burst=2))
    assert gateway.proxies is None  # no trusted proxy: no per-request work at all
    now = [1000.0]  # the limiter's clock: frozen, so nothing refills
    gateway.limiter = RateLimiter(rate=1, burst=2, clock=lambda: now[0])
    for peer in ("127.0.0.1", "198.51.100.1"):
        async with asgi_client(gateway, ip=peer) as http:
            codes = [(await http.get(URL, headers={
                "X-Forwarded-For": f"203.0.113.{i}", "Forwarded": f"for=192.0.2.{i}"})
            ).status_code for i in range(4)]
        assert codes == [401, 401, 429, 429], peer
    await gateway.upstreams.aclose()


async def test_forwarded_for_from_a_trusted_proxy_picks_the_bucket(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(GatewaySettings(
        rate_limit=1, rate_burst=2, trusted_proxies=parse_networks("10.0.0.0/8")))
    now = [1000.0]
    gateway.limiter = RateLimiter(rate=1, burst=2, clock=lambda: now[0])

    async def anonymous(peer: str, **headers: str) -> int:
        async with asgi_client(gateway, ip=peer) as http:
            return (await http.get(URL, headers=headers)).status_code

    proxy = "10.0.0.5"
    assert [await anonymous(proxy, **{"X-Forwarded-For": "203.0.113.1"})
            for _ in range(3)] == [401, 401, 429]
    # Another client behind the same proxy has its own bucket (either header).
    assert await anonymous(proxy, **{"X-Forwarded-For": "203.0.113.2"}) == 401
    assert await anonymous(proxy, Forwarded="for=203.0.113.3;proto=https") == 401
    # What the client itself prepends is not believed: the proxy's entry decides.
    assert await anonymous(proxy, **{"X-Forwarded-For": "192.0.2.77, 203.0.113.1"}) == 429
    # Two trusted hops: the first untrusted address from the right is the client.
    assert await anonymous(proxy, **{"X-Forwarded-For": "203.0.113.1, 10.9.9.9"}) == 429
    # The proxy itself, without a header, is one more client.
    assert await anonymous(proxy) == 401
    now[0] += 1.0  # 1/s refills one request
    assert await anonymous(proxy, **{"X-Forwarded-For": "203.0.113.1"}) == 401
    await gateway.upstreams.aclose()


def test_trusted_proxies_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_TRUSTED_PROXIES", raising=False)
    assert GatewaySettings.from_env().trusted_proxies == ()
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "10.0.0.1/8, 2001:db8::/32")
    settings = GatewaySettings.from_env()
    assert settings.trusted_proxies == parse_networks("10.0.0.0/8,2001:db8::/32")
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, localhost")
    with pytest.raises(ConfigError, match="GATEWAY_TRUSTED_PROXIES: .*'localhost'"):
        GatewaySettings.from_env()


async def test_rate_limit_can_be_turned_off(client: httpx.AsyncClient,
                                            bearer: Callable[..., dict[str, str]]) -> None:
    r = await client.get(URL, headers=bearer())
    assert r.status_code == 200 and "ratelimit-limit" not in r.headers


# --- body size ------------------------------------------------------------------------
@pytest.fixture
def small_body_gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(GatewaySettings(rate_limit=0, max_body_bytes=1000))


async def test_body_limit_on_content_length(
        small_body_gateway: Gateway, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    async with asgi_client(small_body_gateway) as http:
        ok = await http.post(URL, content=b"x" * 1000, headers=bearer())
        assert ok.status_code == 200 and echo.last["body_size"] == 1000
        r = await http.post(URL, content=b"x" * 1001, headers=bearer())
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Content Too Large"
        r = await http.post(URL, content=b"{}", headers={**bearer(), "Content-Length": "x"})
        assert r.status_code == 400
    assert len(echo.seen) == 1
    await small_body_gateway.upstreams.aclose()


async def test_body_limit_while_streaming(
        small_body_gateway: Gateway, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"y" * 300

    async with asgi_client(small_body_gateway) as http:
        ok = await http.post(URL, content=chunks(3), headers=bearer())  # chunked, 900 B
        assert ok.status_code == 200 and echo.last["body_size"] == 900
        assert "transfer-encoding" not in echo.last["headers"]  # re-framed for upstream
        r = await http.post(URL, content=chunks(4), headers=bearer())  # 1200 B, no length
        assert r.status_code == 413
    assert len(echo.seen) == 1
    await small_body_gateway.upstreams.aclose()


# --- upstream failures ----------------------------------------------------------------
@pytest.fixture
def hanging_upstream() -> Iterator[str]:
    """A socket that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def test_upstream_down_is_502_quickly(
        make_gateway: Callable[..., Gateway], bearer: Callable[..., dict[str, str]]) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gateway = make_gateway(GatewaySettings(rate_limit=0, upstream_timeout=3.0),
                           upstreams={"catalog": down})
    async with asgi_client(gateway) as http:
        started = time.monotonic()
        r = await http.get(URL, headers=bearer())
        elapsed = time.monotonic() - started
        metrics = (await http.get("/metrics")).text
    await gateway.upstreams.aclose()
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 502 and "catalog" in r.json()["detail"]
    assert elapsed < 1.0
    assert ('charter_gateway_upstream_errors_total{api="catalog",kind="connect",'
            'service="gateway"} 1.0') in metrics


async def test_upstream_hanging_is_504_within_the_timeout(
        make_gateway: Callable[..., Gateway], hanging_upstream: str,
        bearer: Callable[..., dict[str, str]]) -> None:
    timeout = 0.5
    gateway = make_gateway(GatewaySettings(rate_limit=0, upstream_timeout=timeout),
                           upstreams={"catalog": hanging_upstream})
    async with asgi_client(gateway) as http:
        started = time.monotonic()
        r = await http.get(URL, headers=bearer())
        elapsed = time.monotonic() - started
    await gateway.upstreams.aclose()
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    assert timeout * 0.9 <= elapsed < timeout + 1.0


async def test_slow_upstream_is_504_within_the_timeout(
        make_gateway: Callable[..., Gateway], echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, upstream_timeout=0.3))
    async with asgi_client(gateway) as http:
        started = time.monotonic()
        r = await http.get(URL, headers={**bearer(), "x-test-delay": "3"})
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and elapsed < 1.3
        # The pool is still usable afterwards.
        assert (await http.get(URL, headers=bearer())).status_code == 200
    await gateway.upstreams.aclose()


async def test_api_without_an_upstream_is_503(
        make_gateway: Callable[..., Gateway], bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway()
    gateway.upstreams.urls["catalog"] = None
    async with asgi_client(gateway) as http:
        r = await http.get(URL, headers=bearer())
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"


# --- metrics --------------------------------------------------------------------------
async def test_metrics_count_by_api_operation_and_status(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    await client.get(URL, headers=bearer())
    await client.get(URL)
    await client.get("/catalog/v1/products/1", headers=bearer("cart:read"))
    await client.get("/nowhere")
    text = (await client.get("/metrics")).text
    for line in (
        'charter_gateway_requests_total{api="catalog",method="GET",operation="list_products",'
        'service="gateway",status="200"} 1.0',
        'charter_gateway_requests_total{api="catalog",method="GET",operation="list_products",'
        'service="gateway",status="401"} 1.0',
        'charter_gateway_requests_total{api="catalog",method="GET",operation="get_product",'
        'service="gateway",status="403"} 1.0',
        'charter_gateway_requests_total{api="-",method="GET",operation="unrouted",'
        'service="gateway",status="404"} 1.0',
        'charter_gateway_auth_failures_total{api="catalog",service="gateway",status="401"} 1.0',
        'charter_gateway_request_duration_seconds_count{api="catalog",operation="list_products",'
        'service="gateway"} 2.0',
    ):
        assert line in text, line
    assert "/metrics" not in text  # scrapes and probes are not counted
