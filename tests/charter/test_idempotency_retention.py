"""Idempotency keys expire: purge (SQLite and PostgreSQL), expired keys run afresh, the
scheduled purger, the settings and ``charter db purge``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, func, insert, select

from charter import config
from charter.db import Database
from charter.idempotency import (
    DEFAULT_RETENTION,
    fingerprint,
    purge_interval_from_env,
    retention_from_env,
)
from charter.idempotency_store import (
    Idempotency,
    idempotency_table,
    purge_database,
    start_purger,
)
from charter.problems import Unprocessable
from charterctl.cli import main
from tests.support.polling import wait_until

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'idem.db'}"
    value: str = request.getfixturevalue("postgres_url")
    return value


@pytest.fixture
def table() -> Table:
    return idempotency_table(MetaData())


@pytest.fixture
def db(url: str, table: Table) -> Iterator[Database]:
    database = Database(url)
    assert table.metadata is not None
    table.metadata.create_all(database.engine)
    yield database
    database.dispose()


def keys(db: Database, table: Table) -> set[str]:
    with db.session() as session:
        return {row.key for row in session.execute(select(table.c.key))}


def store_at(db: Database, table: Table, key: str, when: datetime) -> None:
    with db.write() as session:
        Idempotency(table, retention=WEEK, clock=lambda: when).store(
            session, "test.op", key, fingerprint({"k": key}), 201, {"key": key})


def test_purge_deletes_expired_keys_and_keeps_fresh_ones(db: Database, table: Table) -> None:
    store_at(db, table, "old", T0 - WEEK - timedelta(seconds=1))
    store_at(db, table, "edge", T0 - WEEK)  # exactly the retention: still honoured
    store_at(db, table, "fresh", T0 - timedelta(days=1))
    idem = Idempotency(table, retention=WEEK, clock=Clock())
    with db.write() as session:
        assert idem.purge(session) == 1
    assert keys(db, table) == {"edge", "fresh"}
    with db.write() as session:  # purging again is harmless (several workers may)
        assert idem.purge(session) == 0
    assert keys(db, table) == {"edge", "fresh"}


def test_an_expired_key_is_treated_as_new(db: Database, table: Table) -> None:
    clock = Clock()
    idem = Idempotency(table, retention=WEEK, clock=clock)
    runs: list[int] = []

    def action(_session: Any) -> tuple[int, Any]:
        runs.append(1)
        return 201, {"run": len(runs)}

    def run(request: Any) -> Any:
        return idem.run(db.write, scope="test.op", key="k-1", request=request, action=action)

    first = run({"a": 1})
    assert (first.status, first.body, first.replayed) == (201, {"run": 1}, False)
    clock.now = T0 + WEEK - timedelta(seconds=1)  # within the retention: replayed
    again = run({"a": 1})
    assert (again.body, again.replayed) == ({"run": 1}, True)
    with pytest.raises(Unprocessable):  # and still bound to its first request
        run({"a": 2})
    clock.now = T0 + WEEK + timedelta(seconds=1)  # expired, not purged yet: runs afresh
    later = run({"a": 2})
    assert (later.body, later.replayed) == ({"run": 2}, False)
    assert len(runs) == 2
    # The new use starts a new retention period.
    assert run({"a": 2}).replayed
    with db.session() as session:
        count = session.execute(select(func.count()).select_from(table)).scalar_one()
    assert count == 1


def test_the_scheduled_purger_deletes_expired_keys(db: Database, table: Table) -> None:
    clock = Clock()
    store_at(db, table, "a", T0 - timedelta(days=2))
    store_at(db, table, "b", T0 - timedelta(days=9))
    purger = start_purger(db, table, name="test", interval=0.05, retention=WEEK, clock=clock)
    try:
        wait_until(lambda: keys(db, table) == {"a"}, timeout=5, what="b purged")
        clock.now = T0 + timedelta(days=6)  # now "a" is 8 days old: the next round takes it
        wait_until(lambda: keys(db, table) == set(), timeout=5, what="a purged")
    finally:
        purger.stop()
    assert purger.thread is not None and not purger.thread.is_alive()


def test_interval_zero_starts_no_thread(db: Database, table: Table) -> None:
    purger = start_purger(db, table, name="test", interval=0, retention=WEEK)
    assert purger.thread is None
    purger.stop()


def test_retention_and_interval_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDEMPOTENCY_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("IDEMPOTENCY_PURGE_INTERVAL", raising=False)
    assert retention_from_env() == DEFAULT_RETENTION == timedelta(days=7)
    assert purge_interval_from_env() == 3600.0
    monkeypatch.setenv("IDEMPOTENCY_RETENTION_DAYS", "30")
    assert retention_from_env() == timedelta(days=30)
    assert Idempotency(idempotency_table(MetaData())).retention == timedelta(days=30)
    for bad in ("0.5", "0", "-7", "nan", "week"):
        monkeypatch.setenv("IDEMPOTENCY_RETENTION_DAYS", bad)
        with pytest.raises(config.ConfigError, match="IDEMPOTENCY_RETENTION_DAYS"):
            retention_from_env()
    monkeypatch.setenv("IDEMPOTENCY_PURGE_INTERVAL", "0")
    assert purge_interval_from_env() == 0
    for bad in ("-1", "inf", "hourly"):
        monkeypatch.setenv("IDEMPOTENCY_PURGE_INTERVAL", bad)
        with pytest.raises(config.ConfigError, match="IDEMPOTENCY_PURGE_INTERVAL"):
            purge_interval_from_env()


def test_charter_db_purge(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str],
                          migrated_db: Callable[[str, str], Database]) -> None:
    """On a real service schema (orders' migrations): expired keys go, fresh ones stay;
    ``--only`` limits the components; a component whose database was never created is
    skipped without creating it."""
    db = migrated_db("orders", url)
    table = idempotency_table(MetaData())
    now = datetime.now(UTC)
    with db.write() as session:
        session.execute(insert(table), [
            {"scope": "s", "key": key, "fingerprint": "f", "status": 201, "body": None,
             "created_at": now - age}
            for key, age in (("old", timedelta(days=8)), ("new", timedelta(hours=1)))
        ])
    never_created = tmp_path / "nowhere" / "payments.db"
    monkeypatch.setenv("ORDERS_DATABASE_URL", url)
    monkeypatch.setenv("PAYMENTS_DATABASE_URL", f"sqlite:///{never_created}")
    monkeypatch.delenv("IDEMPOTENCY_RETENTION_DAYS", raising=False)
    assert main(["db", "purge", "--only", "orders,payments"]) == 0
    assert capsys.readouterr().out == "orders: 1 expired idempotency keys deleted\n"
    assert keys(db, table) == {"new"}
    assert not never_created.exists()
    assert purge_database(url) == 0
