"""Catalog reads on a real streaming-replication standby of the local PostgreSQL server.

The module's standby is made by ``charter db replica setup`` (:mod:`charterctl.replica`,
``--allow-local-replication``) on a free port, and torn down (stopped, slot dropped, data
directory removed) even when a test fails. It needs root (PostgreSQL runs as ``postgres``)
and the server programs; without them, or when set-up fails, the tests are skipped on a
laptop and fail with ``CI=true``. The catalog database is created after the base backup,
so the standby gets it by replication.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from charter import migrations
from charter.cache import TTLCache
from charter.db import Database
from charter.observability.health import Degraded
from charter.read_replica import replica_checks
from charter.testing import TokenFactory
from charterctl import replica
from services.catalog.app import create_app
from tests.support.databases import (
    POSTGRES_ADMIN_URL,
    migrations_dir,
    require_postgres,
    skip_or_fail,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.postgres

SCOPES = "catalog:read catalog:write"
MAX_LAG_S = 2.0


@pytest.fixture(scope="module")
def standby() -> Iterator[replica.Standby]:
    require_postgres()
    if os.geteuid() != 0:
        skip_or_fail("the standby runs as the postgres user: run the replication test as root")
    try:
        replica.find_bindir()
    except replica.ReplicaError as exc:
        skip_or_fail(str(exc))
    tag = uuid.uuid4().hex[:8]
    spec = replica.Standby(primary=POSTGRES_ADMIN_URL, port=free_port(),
                           data_dir=Path(f"/tmp/charter-test-replica-{tag}"),
                           slot=f"charter_test_{tag}")
    try:
        replica.setup(spec, allow_local_replication=True)
    except replica.ReplicaError as exc:  # setup() removed what it had made
        skip_or_fail(f"standby set-up failed: {exc}")
    try:
        yield spec
    finally:
        replica.teardown(spec)


@pytest.fixture
def catalog_db(standby: replica.Standby,
               postgres_url: str) -> Iterator[tuple[Database, str]]:
    """A migrated catalog database on the primary, read through the standby."""
    migrations.upgrade("catalog", migrations_dir("catalog"), postgres_url)
    name = postgres_url.rsplit("/", 1)[-1]
    db = Database(postgres_url, read_url=standby.standby_url(name), service="catalog")
    yield db, name
    db.dispose()


def reads(database: str, route: str) -> float:
    return REGISTRY.get_sample_value("charter_db_replica_reads_total",
                                     {"service": "catalog", "database": database,
                                      "route": route}) or 0.0


def wait_on_standby(conn: psycopg.Connection[Any], query: str, since: float) -> float:
    """Seconds from ``since`` until ``query`` returns a row on the standby (at most
    MAX_LAG_S)."""
    while conn.execute(query).fetchone() is None:
        assert time.monotonic() - since < MAX_LAG_S, f"not replayed within {MAX_LAG_S} s"
        time.sleep(0.0005)
    return time.monotonic() - since


def test_reads_come_from_the_caught_up_standby_and_writes_go_to_the_primary(
        standby: replica.Standby, catalog_db: tuple[Database, str], tokens: TokenFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, name = catalog_db
    headers = {"Authorization": f"Bearer {tokens.token(scope=SCOPES)}"}
    app = create_app(db=db, verifier=tokens.verifier(), cache=TTLCache())
    with app.test_client() as client, \
            psycopg.connect(standby.standby_dsn(name), autocommit=True) as on_standby:
        category = client.post("/v1/categories", headers=headers,
                               json={"slug": "tea", "name": "Tea"})
        assert category.status_code == 201, category.text  # a write: only the primary takes it
        created = client.post("/v1/products", headers=headers, json={
            "sku": "TEA-0001", "name": "Sencha", "category_id": category.json()["id"],
            "price": 990, "currency": "EUR"})
        committed = time.monotonic()
        assert created.status_code == 201, created.text
        product = created.json()
        lag = wait_on_standby(on_standby, f"SELECT 1 FROM products WHERE id = {product['id']}",
                              committed)

        before = reads(name, "replica")
        got = client.get(f"/v1/products/{product['id']}", headers=headers)
        assert got.status_code == 200 and got.json() == product
        for size in (1, 2, 3, 4):  # distinct cache keys: each one reads (other writers on
            page = client.get(f"/v1/products?page_size={size}", headers=headers)  # the
            assert page.json()["items"] == [product]  # server may put the standby behind)
        assert reads(name, "replica") > before  # served by the standby
        assert client.get("/health/ready").json()["dependencies"]["database-replica"] == {
            "status": "up"}

        # Replay paused: the read right after a write (the cache just invalidated) runs on
        # the primary, so the cache is filled with the new name, not the standby's old one.
        on_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            renamed = client.patch(f"/v1/products/{product['id']}", headers=headers,
                                   json={"name": "Gyokuro"})
            assert renamed.status_code == 200, renamed.text
            before = reads(name, "primary_behind")
            got = client.get(f"/v1/products/{product['id']}", headers=headers)
            assert got.status_code == 200 and got.json()["name"] == "Gyokuro"
            assert reads(name, "primary_behind") == before + 1
            stale = on_standby.execute(f"SELECT name FROM products WHERE id = {product['id']}")
            assert stale.fetchone() == ("Sencha",)  # what a naive replica read would give
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")
    with capsys.disabled():
        print(f"\nreplication lag of the product insert: {lag * 1000:.1f} ms")

    # the standby is read-only: a write routed there would fail
    read_only = Database(standby.standby_url(name))
    try:
        with pytest.raises(DBAPIError, match="read-only"), read_only.write() as session:
            session.execute(text("UPDATE products SET name = 'x'"))
    finally:
        read_only.dispose()


def test_an_unreachable_replica_is_degraded_and_reads_use_the_primary() -> None:
    require_postgres()
    down = POSTGRES_ADMIN_URL.replace(":5432/", f":{free_port()}/")
    db = Database(POSTGRES_ADMIN_URL, read_url=down, service="catalog")
    assert db.replica is not None
    try:
        with pytest.raises(Degraded, match="replica-unreachable"):
            replica_checks(db.replica)["database-replica"]()
        before = reads("postgres", "primary_unreachable")
        for _ in range(2):  # the second skips the replica without trying it
            with db.read() as session:
                assert session.execute(text("SELECT NOT pg_is_in_recovery()")).scalar()
        assert reads("postgres", "primary_unreachable") == before + 2
    finally:
        db.dispose()


def test_measure_lag_reports_samples(standby: replica.Standby) -> None:
    result: dict[str, Any] = replica.measure_lag(standby, seconds=0.3, interval=0.05)
    assert len(result["samples"]) >= 3
    assert all(0 <= s["lag_ms"] < MAX_LAG_S * 1000 for s in result["samples"])
    assert result["max_lag_ms"] == max(s["lag_ms"] for s in result["samples"])
