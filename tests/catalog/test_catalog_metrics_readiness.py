"""Catalog cache reads on /metrics (``charter_cache_requests_total`` per namespace) and the
readiness check ``redis`` (degraded, never down: reads fall through to the database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from charter.cache import RedisCache
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app
from tests.support.metrics import sample, scrape
from tests.support.servers import free_port

CACHE = "charter_cache_requests_total"


def delta(before: str, after: str, cache: str, result: str) -> float:
    labels = {"service": "catalog", "cache": cache, "result": result}
    return sample(after, CACHE, **labels) - sample(before, CACHE, **labels)


def test_product_and_category_reads_count_misses_then_hits(
        client: Any, auth: Callable[..., dict[str, str]], seeded: dict[str, Any]) -> None:
    product, category = seeded["product"]["id"], seeded["category"]["id"]
    before = scrape(client)
    for _ in range(5):
        assert client.get(f"/v1/products/{product}", headers=auth()).status_code == 200
        assert client.get(f"/v1/categories/{category}", headers=auth()).status_code == 200
    after = scrape(client)
    assert (delta(before, after, "product", "miss"), delta(before, after, "product", "hit")) \
        == (1, 4)
    assert (delta(before, after, "category", "miss"),
            delta(before, after, "category", "hit")) == (1, 4)


def test_an_unknown_product_is_a_miss(client: Any, auth: Callable[..., dict[str, str]],
                                      seeded: dict[str, Any]) -> None:
    before = scrape(client)
    assert client.get("/v1/products/999999", headers=auth()).status_code == 404
    assert delta(before, scrape(client), "product", "miss") == 1


def test_a_redis_that_fails_is_degraded_and_reads_still_answer(
        db: Database, tokens: TokenFactory, auth: Callable[..., dict[str, str]]) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", prefix="charter:catalog")
    app = create_app(db=db, verifier=tokens.verifier(), cache=cache)
    with app.test_client() as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "degraded"}
        assert ready.json()["dependencies"]["redis"] == {"status": "degraded",
                                                         "reason": "cache-bypassed"}
        before = scrape(client)
        assert client.get("/v1/products?page_size=1", headers=auth()).status_code == 200
        assert delta(before, scrape(client), "product-page", "miss") == 1


@pytest.mark.redis
def test_a_redis_that_answers_is_up(db: Database, tokens: TokenFactory, redis_url: str) -> None:
    app = create_app(db=db, verifier=tokens.verifier(),
                     cache=RedisCache(redis_url, prefix="charter:catalog-ready-test"))
    with app.test_client() as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["dependencies"]["redis"] == {"status": "up"}
