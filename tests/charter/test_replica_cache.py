"""Caches across instances (``charter up --replicas``, no Redis): a write through one
catalog instance is seen by a read through another, because every instance's cache keys
its namespaces by versions in the one file they share (``<var>/cache/catalog.versions``).

Two in-process catalog apps on one SQLite file and one var dir stand for two instances."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from charter.cache import TTLCache, WorkerSharedCache, make_cache, replica_instances
from charter.config import ConfigError
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app

SCOPES = "catalog:read catalog:write"


@pytest.fixture
def one_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One worker per instance, no Redis, a var dir of the test's own."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("CHARTER_WORKERS", "1")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


@pytest.fixture
def two_instances(one_host: Path, migrated_db: Callable[[str, str], Database],
                  tokens: TokenFactory) -> Iterator[tuple[Any, Any]]:
    """The test clients of two catalog apps sharing one database and one var dir."""
    url = f"sqlite:///{one_host / 'catalog.db'}"
    migrated_db("catalog", url)
    databases = [Database(url), Database(url)]
    apps = [create_app(db=db, verifier=tokens.verifier()) for db in databases]
    with apps[0].test_client() as a, apps[1].test_client() as b:
        yield a, b
    for db in databases:
        db.dispose()


def headers(tokens: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(scope=SCOPES)}"}


def write_then_read(a: Any, b: Any, auth: dict[str, str]) -> tuple[str, int, int]:
    """Create a product through A, read it and the list through B (now cached there),
    rename it and add another through A; what B then reads: name and totals."""
    category = a.post("/v1/categories", headers=auth,
                      json={"slug": "tea", "name": "Tea"}).json()
    product = a.post("/v1/products", headers=auth, json={
        "sku": "TEA-0001", "name": "Sencha", "category_id": category["id"],
        "price": 990, "currency": "EUR"}).json()
    url = f"/v1/products/{product['id']}"
    assert b.get(url, headers=auth).json()["name"] == "Sencha"  # cached in B
    before = b.get("/v1/products", headers=auth).json()["total"]  # cached in B
    assert a.patch(url, headers=auth, json={"name": "Gyokuro"}).status_code == 200
    assert a.post("/v1/products", headers=auth, json={
        "sku": "TEA-0002", "name": "Bancha", "category_id": category["id"],
        "price": 590, "currency": "EUR"}).status_code == 201
    return (b.get(url, headers=auth).json()["name"], before,
            b.get("/v1/products", headers=auth).json()["total"])


@pytest.fixture
def replicated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_REPLICAS", "2")  # what charter up --replicas catalog=2 sets


def test_a_write_through_one_instance_is_read_through_the_other(
        replicated: None, two_instances: tuple[Any, Any], tokens: TokenFactory) -> None:
    a, b = two_instances
    assert isinstance(a.app.app.extensions["charter"].deps["catalog"].cache,
                      WorkerSharedCache)
    name, before, after = write_then_read(a, b, headers(tokens))
    assert name == "Gyokuro"
    assert (before, after) == (1, 2)


@pytest.fixture
def private_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_REPLICAS", raising=False)


def test_without_the_replica_count_each_instance_would_serve_stale_reads(
        private_caches: None, two_instances: tuple[Any, Any], tokens: TokenFactory) -> None:
    """The control: with a private cache per process, B keeps its stale copy (what
    ``CHARTER_REPLICAS`` prevents)."""
    a, b = two_instances
    name, before, after = write_then_read(a, b, headers(tokens))
    assert (name, before, after) == ("Sencha", 1, 1)


def test_replica_count_picks_the_shared_versions_and_is_validated(
        one_host: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CHARTER_REPLICAS", "3")
    assert replica_instances() == 3
    with caplog.at_level(logging.INFO, logger="charter.cache"):
        cache = make_cache("cart")
    assert isinstance(cache, WorkerSharedCache)
    assert cache.versions.path == one_host / "var" / "cache" / "cart.versions"
    assert "CHARTER_REPLICAS=3" in caplog.text
    # entries that only expire stay per process, with their TTL
    expiring = make_cache("exchange", 45, write_invalidated=False)
    assert type(expiring) is TTLCache and expiring.default_ttl == 45
    for bad in ("0", "two"):
        monkeypatch.setenv("CHARTER_REPLICAS", bad)
        with pytest.raises(ConfigError, match="CHARTER_REPLICAS"):
            make_cache("cart")
