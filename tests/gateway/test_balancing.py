"""Load balancing over several instances of a service (docs/gateway.md, *Load balancing
and failover*): spreading, passive ejection with retry on another instance, no retry of
unsafe requests without an Idempotency-Key, active health checks, panic mode, metrics
per instance and DNS discovery — against real tiny upstream servers
(:mod:`instance_support`), the gateway driven in-process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from instance_support import Instance
from prometheus_client import CollectorRegistry

from charter.config import ConfigError
from charter.testing import TokenFactory
from services.gateway.app import Gateway
from services.gateway.balancer import NULL_SERIES, Balancer, Policy
from services.gateway.balancer import Instance as Upstream
from services.gateway.discovery import static_endpoint
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstreams
from tests.support.metrics import sample

pytestmark = pytest.mark.anyio

READ = "/catalog/v1/products/1"
WRITE = "/catalog/v1/products"
# Short intervals so every test takes well under a second or two.
FAST = GatewaySettings(rate_limit=0, upstream_timeout=5.0, connect_timeout=0.5,
                       health_interval=0.05, health_timeout=0.5, unhealthy_threshold=2,
                       healthy_threshold=1, eject_base=0.2, eject_max=1.0, dns_refresh=0.05)
Started = Callable[..., Awaitable[Instance]]


@pytest.fixture
async def instances() -> AsyncIterator[Started]:
    """``await start(name, host=..., port=...)``: a started instance, killed at teardown."""
    made: list[Instance] = []

    async def start(name: str, **kwargs: Any) -> Instance:
        instance = await Instance(name, **kwargs).start()
        made.append(instance)
        return instance

    yield start
    for instance in made:
        await instance.kill()


@pytest.fixture
def headers(tokens: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(scope='catalog:read catalog:write')}"}


@asynccontextmanager
async def running(gateway: Gateway, checks: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with its health checker (as its ASGI lifespan starts it) and a client."""
    if checks:
        await gateway.upstreams.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                     base_url="http://gateway.test") as http:
            yield http
    finally:
        await gateway.upstreams.aclose()


@pytest.fixture(scope="module")
def shell(routes: RouteTable) -> Gateway:
    """One gateway per module (building its portal takes ~0.6 s); each test gives it
    fresh upstreams, settings and metrics (:func:`gateway_for`)."""
    return Gateway(routes, TokenFactory().verifier(), Upstreams([], FAST), FAST,
                   access_log=False)


@pytest.fixture
def gateway_for(shell: Gateway, routes: RouteTable,
                tokens: TokenFactory) -> Callable[..., Gateway]:
    """``gateway_for(other, catalog_urls, settings=FAST, resolver=None)``: the module's
    gateway with the catalog on ``catalog_urls`` and every other API on ``other``."""

    def make(other: Instance, catalog: list[str], settings: GatewaySettings = FAST,
             resolver: Any = None) -> Gateway:
        urls: dict[str, Any] = {a.api: other.url for a in routes.apis}
        urls["catalog"] = catalog
        upstreams = Upstreams(list(urls), settings, urls, resolver=resolver)
        registry = CollectorRegistry()
        metrics = GatewayMetrics(registry)
        upstreams.series = metrics.instances.series
        upstreams.on_forget = metrics.instances.forget
        shell.verifier = tokens.verifier()
        shell.upstreams, shell.settings = upstreams, settings
        shell.registry, shell.metrics = registry, metrics
        return shell

    return make


async def metric(http: httpx.AsyncClient, name: str, instance: Instance, **labels: str) -> float:
    text = (await http.get("/metrics")).text
    return sample(text, name, service="gateway", upstream="catalog", instance=instance.key,
                  **labels)


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> float:
    """Seconds until ``condition()`` holds (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_requests_spread_round_robin_and_are_counted_per_instance(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b, c = [await instances(n) for n in "abc"]
    gateway = gateway_for(other, [a.url, b.url, c.url])
    async with running(gateway, checks=False) as http:
        answers = [await http.get(READ, headers=headers) for _ in range(30)]
        assert {r.status_code for r in answers} == {200}
        assert (a.hits, b.hits, c.hits) == (10, 10, 10)  # even load: plain round robin
        for instance in (a, b, c):
            assert await metric(http, "charter_gateway_upstream_requests_total",
                                instance) == 10
            assert await metric(http, "charter_gateway_upstream_healthy", instance) == 1


async def test_busy_instance_gets_fewer_requests(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway, checks=False) as http:
        slow = gateway.upstreams.balancer("catalog").instances[a.key]
        slow.outstanding = 5  # as if five requests were stuck there
        for _ in range(10):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert (a.hits, b.hits) == (0, 10)


async def test_killed_instance_is_ejected_at_once_without_a_failed_read_and_readmitted(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway) as http:
        for _ in range(4):  # keep-alive connections to both
            assert (await http.get(READ, headers=headers)).status_code == 200
        await a.kill()
        killed = time.monotonic()
        statuses = [(await http.get(READ, headers=headers)).status_code for _ in range(20)]
        assert statuses == [200] * 20  # the request that met the dead one went to b
        balancer = gateway.upstreams.balancer("catalog")
        assert not balancer.instances[a.key].in_rotation
        assert time.monotonic() - killed < 1.0  # ejected on its first refused connection
        assert await metric(http, "charter_gateway_upstream_ejections_total", a) == 1
        assert await metric(http, "charter_gateway_upstream_healthy", a) == 0
        assert await metric(http, "charter_gateway_upstream_instance_retries_total", a) == 1
        assert await metric(http, "charter_gateway_upstream_failures_total", a,
                            kind="connect") >= 1
        # restarted: back after the back-off (0.2 s) and one passing check (every 0.05 s)
        restarted = await instances("a", port=a.port)
        back = await eventually(lambda: balancer.instances[a.key].in_rotation)
        assert back < 1.0
        for _ in range(4):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert restarted.hits == 2


async def test_kill_under_concurrent_load_fails_no_read(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b, c = [await instances(n) for n in "abc"]
    gateway = gateway_for(other, [a.url, b.url, c.url])
    statuses: list[int] = []
    async with running(gateway) as http:
        for _ in range(3):  # the token verified and cached; a connection to each
            assert (await http.get(READ, headers=headers)).status_code == 200
        stop = time.monotonic() + 0.4

        async def client() -> None:
            while time.monotonic() < stop:
                statuses.append((await http.get(READ, headers=headers)).status_code)

        before_kill: list[int] = []

        async def killer() -> None:
            await asyncio.sleep(0.1)
            await b.kill()  # connections in use and kept alive are reset
            before_kill.append(len(statuses))

        await asyncio.gather(killer(), *(client() for _ in range(10)))
    assert len(statuses) - before_kill[0] >= 10  # reads after the kill
    assert set(statuses) == {200}
    assert b.hits > 0 and a.hits > b.hits and c.hits > b.hits


async def test_post_without_idempotency_key_is_not_retried(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway, checks=False) as http:
        await b.kill()
        statuses = [(await http.post(WRITE, headers=headers, json={})).status_code
                    for _ in range(4)]
        assert sorted(statuses) == [200, 200, 200, 502]  # one failure shows, once
        assert await metric(http, "charter_gateway_upstream_instance_retries_total", b) == 0
        assert a.hits == 3


async def test_post_with_idempotency_key_is_retried_on_another_instance(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway, checks=False) as http:
        await b.kill()
        keyed = {**headers, "Idempotency-Key": "k-1"}
        statuses = [(await http.post(WRITE, headers=keyed, json={"n": 1})).status_code
                    for _ in range(4)]
        assert statuses == [200] * 4
        assert await metric(http, "charter_gateway_upstream_instance_retries_total", b) == 1
        assert a.hits == 4


async def test_every_instance_down_is_502_problem(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway, checks=False) as http:
        await a.kill()
        await b.kill()
        r = await http.get(READ, headers=headers)
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/problem+json"


async def test_failing_health_check_takes_an_instance_out_until_it_passes(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway) as http:
        balancer = gateway.upstreams.balancer("catalog")
        a.ready = False
        out = await eventually(lambda: not balancer.instances[a.key].in_rotation)
        assert out < 0.5  # two failed checks 0.05 s apart
        before = a.hits
        for _ in range(6):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert a.hits == before  # out of rotation
        assert await metric(http, "charter_gateway_upstream_healthy", a) == 0
        a.ready = True
        await eventually(lambda: balancer.instances[a.key].in_rotation)
        for _ in range(6):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert a.hits == before + 3
        assert await metric(http, "charter_gateway_upstream_healthy", a) == 1


async def test_panic_mode_tries_instances_when_none_passes_its_checks(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str]) -> None:
    other = await instances("other")
    a, b = await instances("a"), await instances("b")
    gateway = gateway_for(other, [a.url, b.url])
    async with running(gateway) as http:
        balancer = gateway.upstreams.balancer("catalog")
        a.ready = b.ready = False
        await eventually(lambda: balancer.healthy_count() == 0)
        assert (await http.get(READ, headers=headers)).status_code == 200
        ready = await http.get("/health/ready")
        assert ready.status_code == 200  # by default readiness does not follow upstreams
        assert ready.json()["checks"]["upstreams"] == \
            "degraded: no instance in rotation for catalog"
    strict = gateway_for(other, [a.url, b.url], replace(FAST, ready_requires_upstreams=True))
    async with running(strict) as http:
        await eventually(lambda: strict.upstreams.balancer("catalog").healthy_count() == 0)
        assert (await http.get("/health/ready")).status_code == 503


async def test_dns_discovery_spreads_drains_and_adds_instances(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    other = await instances("other")
    one = await instances("one", host="127.0.0.1")
    two = await instances("two", host="127.0.0.2", port=one.port)
    three = await instances("three", host="127.0.0.3", port=one.port)
    four = await instances("four", host="127.0.0.4", port=one.port)
    answer = {"catalog.test": ["127.0.0.1", "127.0.0.2", "127.0.0.3"]}
    asked: list[str] = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        return answer.get(host, [host])

    monkeypatch.setenv("CATALOG_DISCOVERY", "dns")
    gateway = gateway_for(other, [f"http://catalog.test:{one.port}"],
                          resolver=resolver)
    async with running(gateway) as http:
        balancer = gateway.upstreams.balancer("catalog")
        await eventually(lambda: balancer.healthy_count() == 3)
        for _ in range(9):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert (one.hits, two.hits, three.hits) == (3, 3, 3)
        assert one.hosts_seen == {f"catalog.test:{one.port}"}  # the name, not the address
        answer["catalog.test"] = ["127.0.0.1", "127.0.0.3", "127.0.0.4"]
        await eventually(lambda: two.key not in balancer.instances
                         and balancer.healthy_count() == 3)
        hits = two.hits
        for _ in range(9):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert two.hits == hits  # drained
        assert four.hits == 3  # discovered, checked, then used
        assert "catalog.test" in asked


async def test_a_discovery_host_is_resolved_while_the_url_keeps_the_name(
        instances: Started, gateway_for: Callable[..., Gateway],
        headers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes: the headless ``catalog-instances`` Service is resolved; ``Host`` (and
    the TLS name) stay the ClusterIP Service's name, the one the certificate carries."""
    other = await instances("other")
    one = await instances("one", host="127.0.0.1")
    two = await instances("two", host="127.0.0.2", port=one.port)
    answer = {"catalog-instances.test": ["127.0.0.1", "127.0.0.2"]}
    asked: list[str] = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        return answer.get(host, [])

    monkeypatch.setenv("CATALOG_DISCOVERY", "dns")
    monkeypatch.setenv("CATALOG_DISCOVERY_HOST", "catalog-instances.test")
    gateway = gateway_for(other, [f"http://catalog.test:{one.port}"], resolver=resolver)
    async with running(gateway) as http:
        balancer = gateway.upstreams.balancer("catalog")
        await eventually(lambda: balancer.healthy_count() == 2)
        for _ in range(4):
            assert (await http.get(READ, headers=headers)).status_code == 200
        assert (one.hits, two.hits) == (2, 2)
        assert one.hosts_seen == two.hosts_seen == {f"catalog.test:{one.port}"}
        assert set(asked) == {"catalog-instances.test"}


async def test_unresolvable_name_keeps_the_known_instances(
        instances: Started, gateway_for: Callable[..., Gateway], headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    other = await instances("other")
    one = await instances("one")
    answer: dict[str, list[str]] = {"catalog.test": ["127.0.0.1"]}

    def resolver(host: str) -> list[str]:
        if host not in answer:
            raise OSError("Name or service not known")
        return answer[host]

    monkeypatch.setenv("CATALOG_DISCOVERY", "dns")
    gateway = gateway_for(other, [f"http://catalog.test:{one.port}"],
                          resolver=resolver)
    async with running(gateway) as http:
        balancer = gateway.upstreams.balancer("catalog")
        await eventually(lambda: one.key in balancer.instances
                         and balancer.healthy_count() == 1)
        del answer["catalog.test"]
        with caplog.at_level(logging.WARNING, "services.gateway.upstreams"):
            await asyncio.sleep(0.2)  # a few failed refreshes
        assert (await http.get(READ, headers=headers)).status_code == 200
        assert balancer.healthy_count() == 1
        warned = [r for r in caplog.records if "cannot resolve catalog.test" in r.getMessage()]
        assert len(warned) == 1  # once per failing streak, not per refresh


def test_instances_come_from_service_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_URLS", "http://127.0.0.1:8101, http://127.0.0.1:8111/")
    monkeypatch.setenv("CART_URL", "http://127.0.0.1:9102")
    ups = Upstreams(["catalog", "cart"], FAST)
    assert ups.instance_urls == {"catalog": ("http://127.0.0.1:8101", "http://127.0.0.1:8111"),
                                 "cart": ("http://127.0.0.1:9102",)}
    assert [i.key for i in ups.balancer("catalog").all()] == ["127.0.0.1:8101",
                                                               "127.0.0.1:8111"]
    monkeypatch.setenv("CATALOG_URLS", "http://127.0.0.1:8101,catalog:8111")
    with pytest.raises(ConfigError, match="CATALOG_URLS.*catalog:8111"):
        Upstreams(["catalog"], FAST)
    monkeypatch.delenv("CATALOG_URLS")
    monkeypatch.setenv("CATALOG_DISCOVERY", "round-robin-please")
    with pytest.raises(ConfigError, match="CATALOG_DISCOVERY"):
        Upstreams(["catalog"], FAST)


def test_ejection_back_off_doubles_up_to_the_cap_and_readmission_needs_a_check(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    balancer = Balancer("catalog", Policy(eject_after=3, eject_base=1.0, eject_max=4.0),
                        clock=lambda: now[0])
    instance = Upstream(static_endpoint("http://127.0.0.1:1"), httpx.AsyncHTTPTransport(),
                        NULL_SERIES)
    balancer.add(instance)
    for _ in range(2):
        balancer.failed(instance, "timeout")
    assert instance.in_rotation  # two timeouts: not yet
    backoffs: list[float] = []
    with caplog.at_level(logging.INFO, "services.gateway.balancer"):
        for _ in range(4):
            balancer.failed(instance, "connect")  # refused: ejected at once
            assert not instance.in_rotation
            assert instance.ejected_until is not None
            backoffs.append(instance.ejected_until - now[0])
            balancer.check_passed(instance)  # during the back-off: still out
            assert not instance.in_rotation
            now[0] = instance.ejected_until
            balancer.check_passed(instance)
            assert instance.in_rotation
    assert backoffs == [1.0, 2.0, 4.0, 4.0]
    ejected = [r for r in caplog.records if "ejected" in r.getMessage()]
    back = [r for r in caplog.records if "back in rotation" in r.getMessage()]
    assert len(ejected) == 4 and len(back) == 4  # once per event
    assert "127.0.0.1:1" in ejected[0].getMessage() and "connect" in ejected[0].getMessage()
    now[0] += 10.0  # in rotation longer than the cap: the back-off starts over
    balancer.failed(instance, "connect")
    assert instance.ejected_until == now[0] + 1.0
