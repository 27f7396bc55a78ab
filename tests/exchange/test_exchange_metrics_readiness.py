"""Exchange's /metrics (rates cache hits and misses, stale answers) and its readiness check
``rates``: up with fresh rates, degraded (still ready) while the last known rates are served
stale, down (503) when the source fails and no rate was ever known."""

from __future__ import annotations

from typing import Any

from exchange_fakes import InMemoryRateSource

from tests.support.clocks import SettableClock
from tests.support.metrics import sample, scrape

RATE = "/v1/rates?from=EUR&to=USD"
CACHE = "charter_cache_requests_total"


def test_rate_reads_count_cache_misses_then_hits(client: Any, auth: dict[str, str],
                                                 clock: SettableClock) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get(RATE, headers=auth).status_code == 200
    clock.advance(61)  # the table expired: one more miss
    assert client.get(RATE, headers=auth).status_code == 200
    after = scrape(client)

    def delta(result: str) -> float:
        labels = {"service": "exchange", "cache": "rates", "result": result}
        return sample(after, CACHE, **labels) - sample(before, CACHE, **labels)

    assert (delta("miss"), delta("hit")) == (2, 2)


def test_stale_answers_are_on_metrics(client: Any, auth: dict[str, str],
                                      source: InMemoryRateSource, clock: SettableClock) -> None:
    name = "charter_exchange_stale_served_total"
    client.get(RATE, headers=auth)
    before = sample(scrape(client), name, service="exchange")
    source.down = True
    clock.advance(61)
    assert client.get(RATE, headers=auth).json()["stale"] is True
    assert sample(scrape(client), name, service="exchange") == before + 1


def test_ready_with_fresh_rates(client: Any) -> None:
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    doc = ready.json()
    assert doc["checks"] == {"database": "ok", "rates": "ok"}
    assert doc["dependencies"]["rates"] == {"status": "up"}


def test_stale_rates_are_degraded_but_ready(client: Any, auth: dict[str, str],
                                            source: InMemoryRateSource,
                                            clock: SettableClock) -> None:
    client.get(RATE, headers=auth)  # rates known
    source.down = True
    clock.advance(61)
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"
    assert ready.json()["checks"]["rates"] == "degraded"
    assert ready.json()["dependencies"]["rates"] == {"status": "degraded", "reason": "stale"}


def test_no_rate_ever_known_is_down_and_503(client: Any, source: InMemoryRateSource) -> None:
    source.down = True
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    doc = ready.json()
    assert (doc["status"], doc["checks"]["rates"]) == ("unavailable", "failed")
    assert doc["dependencies"] == {"database": {"status": "up"}, "rates": {"status": "down"}}
