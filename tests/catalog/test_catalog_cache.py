"""Caches: the contract of both backends, catalog cache-aside reads and invalidation.

The Redis variants are marked ``redis`` and use the shared ``redis_url`` fixture
(redis://127.0.0.1:6379/15): skipped with the reason when Redis is unreachable, a failure
when ``CI=true``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from catalog_support import seed_small
from sqlalchemy import text

from charter.cache import Cache, RedisCache, TTLCache, make_cache
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app
from tests.support.plugin import run_threads, wait_until

Auth = Callable[..., dict[str, str]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def any_cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield TTLCache()
        return
    url = request.getfixturevalue("redis_url")
    cache = RedisCache(url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield cache
    cache.clear()


# the cache contract -----------------------------------------------------------------
def test_get_set_delete(any_cache: Cache) -> None:
    assert any_cache.get("a") is None
    any_cache.set("a", {"x": [1, 2], "y": "é"})
    assert any_cache.get("a") == {"x": [1, 2], "y": "é"}
    any_cache.set("a", 3)
    assert any_cache.get("a") == 3
    any_cache.delete("a")
    assert any_cache.get("a") is None
    any_cache.set("none", None)  # None is never stored (it means "miss")
    assert any_cache.get("none") is None


def test_ttl_expiry(any_cache: Cache) -> None:
    """Entries expire after their own TTL (in Redis, by the server's clock: polled)."""
    any_cache.set("short", "v", ttl=0.05)
    any_cache.set("long", "v", ttl=30)
    wait_until(lambda: any_cache.get("short") is None, timeout=5,
               what="the short entry to expire")
    assert any_cache.get("long") == "v"


def test_invalidate_prefix(any_cache: Cache) -> None:
    for key in ("product:1", "product:2", "productlist:1", "category:1", "pro*duct:3"):
        any_cache.set(key, key)
    any_cache.invalidate_prefix("product:")
    assert any_cache.get("product:1") is None and any_cache.get("product:2") is None
    assert any_cache.get("productlist:1") == "productlist:1"
    assert any_cache.get("category:1") == "category:1"
    any_cache.invalidate_prefix("pro*")  # glob characters are literal
    assert any_cache.get("pro*duct:3") is None
    assert any_cache.get("productlist:1") == "productlist:1"


def test_namespace_versions(any_cache: Cache) -> None:
    products = any_cache.namespace("products")
    categories = any_cache.namespace("categories")
    products.set("1", {"name": "old"})
    categories.set("1", {"name": "cat"})
    assert products.get("1") == {"name": "old"}
    products.invalidate()
    assert products.get("1") is None
    assert categories.get("1") == {"name": "cat"}
    calls: list[int] = []

    def load() -> dict[str, str]:
        calls.append(1)
        return {"name": "new"}

    assert products.get_or_load("1", load) == {"name": "new"}
    assert products.get_or_load("1", load) == {"name": "new"}
    assert calls == [1]


def test_incr_counter(any_cache: Cache) -> None:
    assert any_cache.counter("c") == 0
    assert any_cache.incr("c") == 1
    assert any_cache.incr("c") == 2
    assert any_cache.counter("c") == 2


# the in-process cache ---------------------------------------------------------------
def test_ttl_cache_is_bounded_lru() -> None:
    cache = TTLCache(maxsize=3)
    for key in "abc":
        cache.set(key, key)
    assert cache.get("a") == "a"  # a is now the most recently used
    cache.set("d", "d")
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["a", "c", "d"]
    with pytest.raises(ValueError):
        TTLCache(maxsize=0)


def test_ttl_cache_with_a_fake_clock() -> None:
    now = [100.0]
    cache = TTLCache(default_ttl=10, clock=lambda: now[0])
    cache.set("k", 1)
    now[0] += 9.9
    assert cache.get("k") == 1
    now[0] += 0.2
    assert cache.get("k") is None
    assert len(cache) == 0


def test_ttl_cache_returns_copies() -> None:
    cache = TTLCache()
    value = {"items": [1]}
    cache.set("k", value)
    value["items"].append(2)
    got = cache.get("k")
    assert got is not None
    got["items"].append(3)
    assert cache.get("k") == {"items": [1]}


def test_ttl_cache_is_thread_safe() -> None:
    cache = TTLCache(maxsize=50)

    def worker(n: int) -> None:
        for i in range(500):
            cache.set(f"{n}:{i % 70}", i)
            cache.get(f"{(n + 1) % 8}:{i % 70}")
            if i % 50 == 0:
                cache.invalidate_prefix(f"{n}:")
                cache.incr("version")

    assert run_threads(8, worker) == [None] * 8  # no thread raised
    assert len(cache) <= 50
    assert cache.counter("version") == 8 * 10


def test_make_cache_follows_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert isinstance(make_cache("catalog"), TTLCache)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    cache = make_cache("catalog")
    assert isinstance(cache, RedisCache) and cache.prefix == "charter:catalog"


# catalog reads through the cache ----------------------------------------------------
def sneak_rename(db: Database, product_id: int, name: str) -> None:
    """Change the database behind the service's back (the cache cannot know)."""
    with db.session() as s:
        s.execute(text("UPDATE products SET name = :n WHERE id = :i"), {"n": name, "i": product_id})


def check_read_through_and_invalidation(client: Any, auth: Auth, db: Database,
                                        seeded: dict[str, Any]) -> None:
    pid = seeded["product"]["id"]
    url = f"/v1/products/{pid}"
    assert client.get(url, headers=auth()).json()["name"] == "Espresso Blend 1 kg"
    listed = client.get("/v1/products", headers=auth(), params={"q": "espresso"}).json()
    assert listed["total"] == 1

    sneak_rename(db, pid, "Sneaky")  # reads are served from the cache
    assert client.get(url, headers=auth()).json()["name"] == "Espresso Blend 1 kg"
    assert client.get("/v1/products", headers=auth(),
                      params={"q": "espresso"}).json()["total"] == 1

    patched = client.patch(url, headers=auth(), json={"price": 2590})
    assert patched.status_code == 200
    after = client.get(url, headers=auth()).json()
    assert (after["price"], after["name"]) == (2590, "Sneaky")
    assert client.get("/v1/products", headers=auth(),
                      params={"q": "espresso"}).json()["total"] == 0

    # Categories: list cached, every write invalidates.
    names = [c["name"] for c in client.get("/v1/categories", headers=auth()).json()["items"]]
    assert names == ["Empty", "Coffee"]
    cid = seeded["empty_category"]["id"]
    assert client.patch(f"/v1/categories/{cid}", headers=auth(),
                        json={"name": "Tea"}).status_code == 200
    names = [c["name"] for c in client.get("/v1/categories", headers=auth()).json()["items"]]
    assert names == ["Tea", "Coffee"]
    assert client.get(f"/v1/categories/{cid}", headers=auth()).json()["name"] == "Tea"
    assert client.delete(f"/v1/categories/{cid}", headers=auth()).status_code == 204
    assert client.get("/v1/categories", headers=auth()).json()["total"] == 1
    assert client.get(f"/v1/categories/{cid}", headers=auth()).status_code == 404

    # Creating and deleting products shows up in the next list.
    before = client.get("/v1/products", headers=auth()).json()["total"]
    created = client.post("/v1/products", headers=auth(), json={
        "sku": "NEW-0001", "name": "New", "category_id": seeded["category"]["id"],
        "price": 1, "currency": "EUR"}).json()
    assert client.get("/v1/products", headers=auth()).json()["total"] == before + 1
    assert client.delete(f"/v1/products/{created['id']}", headers=auth()).status_code == 204
    assert client.get("/v1/products", headers=auth()).json()["total"] == before
    assert client.get(f"/v1/products/{created['id']}", headers=auth()).status_code == 404


def test_catalog_reads_are_cached_and_writes_invalidate(client: Any, auth: Auth, db: Database,
                                                        seeded: dict[str, Any]) -> None:
    check_read_through_and_invalidation(client, auth, db, seeded)


def test_stock_changes_invalidate_in_stock_lists(client: Any, auth: Auth,
                                                 seeded: dict[str, Any]) -> None:
    spare = seeded["spare"]["id"]

    def in_stock() -> list[int]:
        body = client.get("/v1/products", headers=auth(), params={"in_stock": "true"}).json()
        return [p["id"] for p in body["items"]]

    assert spare in in_stock()
    response = client.post("/v1/reservations", headers=auth(**{"Idempotency-Key": "k-spare-1"}),
                           json={"order_id": "o-spare",
                                 "items": [{"product_id": spare, "quantity": 5}]})
    assert response.status_code == 201
    assert spare not in in_stock()
    client.post("/v1/reservations/o-spare/release",
                headers=auth(**{"Idempotency-Key": "k-spare-2"}))
    assert spare in in_stock()
    client.put(f"/v1/products/{spare}/stock", headers=auth(), json={"on_hand": 0})
    assert spare not in in_stock()
    client.post(f"/v1/products/{spare}/stock/adjustments", headers=auth(), json={"delta": 1})
    assert spare in in_stock()


@pytest.mark.redis
def test_catalog_with_redis_cache(redis_url: str, db: Database, tokens: TokenFactory,
                                  monkeypatch: pytest.MonkeyPatch, auth: Auth) -> None:
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    cache = RedisCache(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}:catalog")
    app = create_app(db=db, verifier=tokens.verifier(), cache=cache)
    seeded = seed_small(app.app.extensions["charter"].deps["catalog"])
    with app.test_client() as client:
        check_read_through_and_invalidation(client, auth, db, seeded)
    assert any(True for _ in cache.client.scan_iter(match=f"{cache.prefix}:*"))
    cache.clear()


def test_redis_failure_falls_through_to_the_database(
        db: Database, tokens: TokenFactory, auth: Auth,
        caplog: pytest.LogCaptureFixture) -> None:
    broken = RedisCache("redis://127.0.0.1:1/0", prefix="catalog", socket_timeout=0.2)
    app = create_app(db=db, verifier=tokens.verifier(), cache=broken)
    service = app.app.extensions["charter"].deps["catalog"]
    category = service.create_category(slug="coffee", name="Coffee")
    product = service.create_product(sku="COF-0001", name="Espresso", category_id=category.id,
                                     price=2490, currency="EUR")
    with caplog.at_level(logging.WARNING, logger="charter.cache"), app.test_client() as client:
        got = client.get(f"/v1/products/{product.id}", headers=auth())
        assert got.status_code == 200 and got.json()["name"] == "Espresso"
        assert client.get("/v1/products", headers=auth()).json()["total"] == 1
        assert client.get("/v1/categories", headers=auth()).json()["total"] == 1
        patched = client.patch(f"/v1/products/{product.id}", headers=auth(),
                               json={"name": "Ristretto"})
        assert patched.status_code == 200
        assert client.get(f"/v1/products/{product.id}",
                          headers=auth()).json()["name"] == "Ristretto"
    assert any("redis cache" in r.getMessage() for r in caplog.records)
