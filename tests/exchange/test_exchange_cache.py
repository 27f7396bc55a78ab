"""TTL cache, stale-but-served fallback, 503 when nothing was ever known, restarts, metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from exchange_fakes import InMemoryRateSource
from exchange_support import SEED_RATES
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from charter.cache import TTLCache
from charter.db import Database
from charter.problems import ServiceUnavailable
from services.exchange.app import exchange_service
from services.exchange.domain import format_rate
from services.exchange.services import ExchangeMetrics
from services.exchange.store import last_known_rates
from tests.support.apps import dependency
from tests.support.clocks import SettableClock
from tests.support.plugin import run_threads

RATE = "/v1/rates?from=EUR&to=USD"


def get(client: Any, auth: dict[str, str], url: str = RATE) -> Any:
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.text
    return response


def test_cache_hit_calls_the_source_once_within_the_ttl(client: Any, auth: dict[str, str],
                                                        source: InMemoryRateSource,
                                                        clock: SettableClock) -> None:
    for url in (RATE, "/v1/rates?from=USD", "/v1/convert?from=EUR&to=JPY&amount=100", RATE):
        get(client, auth, url)
        clock.advance(10)
    assert source.calls == 1


def test_ttl_expiry_refetches(client: Any, auth: dict[str, str], source: InMemoryRateSource,
                              clock: SettableClock) -> None:
    assert get(client, auth).json()["age"] == 0
    clock.advance(59)
    doc = get(client, auth).json()
    assert (source.calls, doc["age"], doc["stale"]) == (1, 59, False)
    clock.advance(2)  # 61 s: the cached table expired (TTL 60 s)
    source.rates["USD"] = "1.1000"
    doc = get(client, auth).json()
    assert (source.calls, doc["age"], doc["rate"], doc["stale"]) == (2, 0, "1.1000000000",
                                                                      False)


def test_ttl_comes_from_the_environment(make_app: Callable[..., Any], auth: dict[str, str],
                                        source: InMemoryRateSource, clock: SettableClock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_CACHE_TTL", "5")
    with make_app(source).test_client() as client:
        get(client, auth)
        clock.advance(4)
        get(client, auth)
        assert source.calls == 1
        clock.advance(2)
        get(client, auth)
        assert source.calls == 2


def test_source_failure_serves_the_last_known_rates_as_stale(
        app: Any, client: Any, auth: dict[str, str], source: InMemoryRateSource,
        clock: SettableClock) -> None:
    fresh = get(client, auth)
    assert "warning" not in fresh.headers
    source.down = True
    clock.advance(61)
    response = get(client, auth)
    doc = response.json()
    assert (doc["stale"], doc["age"], doc["rate"]) == (True, 61, fresh.json()["rate"])
    assert doc["as_of"] == fresh.json()["as_of"]
    assert response.headers["warning"] == '110 - "Response is Stale"'
    converted = get(client, auth, "/v1/convert?from=EUR&to=USD&amount=1000")
    assert converted.json()["stale"] is True and converted.json()["converted_amount"] == 1085
    metrics: ExchangeMetrics = dependency(app, "metrics")
    assert (metrics.stale_served, metrics.source_failures) == (2, 1)


def test_a_failing_source_is_retried_only_after_the_stale_window(
        client: Any, auth: dict[str, str], source: InMemoryRateSource,
        clock: SettableClock) -> None:
    get(client, auth)
    source.down = True
    clock.advance(61)
    assert get(client, auth).json()["stale"] is True
    assert source.calls == 2
    clock.advance(4)  # within EXCHANGE_STALE_RETRY (5 s): the stale answer is reused
    doc = get(client, auth).json()
    assert (source.calls, doc["stale"], doc["age"]) == (2, True, 65)
    clock.advance(2)
    source.down = False  # the source is back
    doc = get(client, auth).json()
    assert (source.calls, doc["stale"], doc["age"]) == (3, False, 0)


def test_503_when_no_rate_was_ever_known(app: Any, client: Any, auth: dict[str, str],
                                         source: InMemoryRateSource) -> None:
    source.down = True
    for url in (RATE, "/v1/rates?from=EUR", "/v1/convert?from=EUR&to=USD&amount=1"):
        response = client.get(url, headers=auth)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"] == "5"
        assert response.json()["title"] == "No exchange rates"
    # a currency into itself needs no rate source
    same = client.get("/v1/convert?from=EUR&to=EUR&amount=250", headers=auth)
    assert same.status_code == 200 and same.json()["converted_amount"] == 250


def test_a_restart_keeps_the_last_known_rates(make_app: Callable[..., Any],
                                              auth: dict[str, str], clock: SettableClock) -> None:
    first_source = InMemoryRateSource("EUR", SEED_RATES)
    with make_app(first_source).test_client() as client:
        before = get(client, auth).json()
    clock.advance(3600)
    down = InMemoryRateSource("EUR", SEED_RATES)
    down.down = True
    with make_app(down).test_client() as client:  # a new instance: empty cache
        response = get(client, auth)
    doc = response.json()
    assert (doc["stale"], doc["age"], doc["rate"]) == (True, 3600, before["rate"])
    assert response.headers["warning"] == '110 - "Response is Stale"'


def test_last_known_rates_are_per_source(make_app: Callable[..., Any], auth: dict[str, str],
                                         db: Database) -> None:
    with make_app(InMemoryRateSource("EUR", SEED_RATES)).test_client() as client:
        get(client, auth)
    other = InMemoryRateSource("EUR", SEED_RATES, name="upstream")
    other.down = True
    with make_app(other).test_client() as client:
        assert client.get(RATE, headers=auth).status_code == 503
    with db.session() as session:
        assert session.scalars(select(last_known_rates.c.source)).all() == ["table"]


def test_a_successful_fetch_replaces_the_last_known_rates(
        client: Any, auth: dict[str, str], source: InMemoryRateSource, clock: SettableClock,
        db: Database) -> None:
    get(client, auth)
    clock.advance(120)
    source.rates["USD"] = "1.2"
    get(client, auth)
    with db.session() as session:
        row = session.execute(select(last_known_rates)).mappings().one()
    assert row["rates"]["USD"] == "1.2"
    assert row["fetched_at"].replace(tzinfo=clock.now().tzinfo) == clock.now()


def test_one_refresh_for_many_concurrent_requests(db: Database, clock: SettableClock) -> None:
    source = InMemoryRateSource("EUR", SEED_RATES)
    service = exchange_service(db, source, TTLCache(clock=clock.monotonic), ttl=60,
                               now=clock.now)
    results = run_threads(12, lambda _i: format_rate(service.rate("EUR", "GBP").rate))
    assert results == ["0.8570000000"] * 12
    assert source.calls == 1


def test_a_broken_source_adapter_is_treated_as_a_failure(db: Database,
                                                         clock: SettableClock) -> None:
    class Broken(InMemoryRateSource):
        def fetch(self) -> Any:
            raise RuntimeError("bug in the adapter")

    service = exchange_service(db, Broken(), TTLCache(clock=clock.monotonic), ttl=60,
                               now=clock.now)
    with pytest.raises(ServiceUnavailable):
        service.rate("EUR", "USD")
    assert service.metrics.source_failures == 1


def test_metrics_collector_exports_counters() -> None:
    metrics = ExchangeMetrics("exchange")
    metrics.count_stale()
    metrics.count_stale()
    metrics.count_failure()
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert 'charter_exchange_stale_served_total{service="exchange"} 2.0' in text
    assert 'charter_exchange_source_failures_total{service="exchange"} 1.0' in text


@pytest.mark.redis
def test_a_shared_redis_cache_spares_the_source(make_app: Callable[..., Any],
                                                auth: dict[str, str], redis_url: str) -> None:
    from charter.cache import RedisCache

    source = InMemoryRateSource("EUR", SEED_RATES)
    for _ in range(2):  # two instances (processes) sharing one Redis
        cache = RedisCache(redis_url, prefix="charter-test:exchange", default_ttl=60)
        with make_app(source, cache=cache).test_client() as client:
            assert get(client, auth).json()["rate"] == "1.0850000000"
    assert source.calls == 1
