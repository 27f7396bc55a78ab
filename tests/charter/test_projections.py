"""Projections over the event store: incremental catch-up with a stored checkpoint,
rebuild from zero, crash consistency, lag, global ordering under concurrent appends on
PostgreSQL (a projection never skips an event), and ``charter projections``."""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from charter.db import Database, service_metadata
from charter.eventstore import (
    EventMetadata,
    EventStore,
    EventStoreTables,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    add_event_store_tables,
)
from charter.eventstore.store import Executor
from charterctl.projections import register
from tests.support.polling import wait_until

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class Boom(Exception):
    """A projection failing mid-batch."""


@dataclass
class ReadModel:
    metadata: MetaData
    tables: EventStoreTables
    summaries: Table  # one row per stream
    applied: Table  # one row per applied event (PK: position, so duplicates fail)


def make_read_model() -> ReadModel:
    metadata = service_metadata()
    tables = add_event_store_tables(metadata)
    summaries = Table("stream_summaries", metadata,
                      Column("stream_id", String(64), primary_key=True),
                      Column("events", Integer, nullable=False),
                      Column("last_type", String(80), nullable=False),
                      Column("last_version", Integer, nullable=False))
    applied = Table("applied_events", metadata,
                    Column("position", Integer, primary_key=True, autoincrement=False),
                    Column("stream_id", String(64), nullable=False))
    return ReadModel(metadata, tables, summaries, applied)


class Summaries:
    """A small projection: per-stream counts, and the positions it applied."""

    name = "stream_summaries"

    def __init__(self, model: ReadModel, fail_at: int | None = None) -> None:
        self.model = model
        self.fail_at = fail_at

    def reset(self, session: Session) -> None:
        session.execute(delete(self.model.summaries))
        session.execute(delete(self.model.applied))

    def apply(self, session: Session, event: RecordedEvent) -> None:
        model = self.model
        session.execute(insert(model.applied).values(position=event.position,
                                                     stream_id=event.stream_id))
        if event.position == self.fail_at:
            raise Boom(f"cannot apply {event.position}")
        found = session.execute(select(model.summaries.c.events)
                                .where(model.summaries.c.stream_id == event.stream_id)
                                ).scalar_one_or_none()
        values = {"last_type": event.type, "last_version": event.version}
        if found is None:
            session.execute(insert(model.summaries).values(
                stream_id=event.stream_id, events=1, **values))
        else:
            session.execute(update(model.summaries)
                            .where(model.summaries.c.stream_id == event.stream_id)
                            .values(events=found + 1, **values))


@pytest.fixture
def model() -> ReadModel:
    return make_read_model()


def open_db(url: str, model: ReadModel) -> Database:
    database = Database(url)
    model.metadata.create_all(database.engine)
    return database


@pytest.fixture
def db(any_database_url: str, model: ReadModel) -> Iterator[Database]:
    database = open_db(any_database_url, model)
    yield database
    database.dispose()


@pytest.fixture
def store(model: ReadModel) -> EventStore:
    return EventStore(model.tables)


@pytest.fixture
def runner(store: EventStore, model: ReadModel) -> ProjectionRunner:
    return ProjectionRunner(store, model.tables)


def event(kind: str = "Happened", **data: Any) -> NewEvent:
    return NewEvent(kind, data, EventMetadata(occurred_at=T0))


def append(db: Database, store: EventStore, stream: str, *kinds: str) -> list[RecordedEvent]:
    with db.write() as session:
        return store.append(session, stream, store.version(session, stream),
                            [event(k) for k in kinds])


def rows(db: Database, model: ReadModel) -> tuple[list[tuple[Any, ...]], list[int]]:
    with db.session() as session:
        summaries = [tuple(r) for r in session.execute(
            select(model.summaries).order_by(model.summaries.c.stream_id))]
        applied = list(session.execute(
            select(model.applied.c.position).order_by(model.applied.c.position)).scalars())
    return summaries, applied


def positions(db: Database, store: EventStore) -> list[int]:
    with db.session() as session:
        return [e.position for e in store.read_all(session, 0, 10_000)]


def checkpoint(db: Database, runner: ProjectionRunner, projection: Summaries) -> int:
    with db.session() as session:
        return runner.checkpoint(session, projection)


def lag(db: Database, runner: ProjectionRunner, projection: Summaries) -> int:
    with db.session() as session:
        return runner.lag(session, projection)


def test_catch_up_is_incremental_and_moves_the_checkpoint(
        db: Database, store: EventStore, runner: ProjectionRunner, model: ReadModel) -> None:
    projection = Summaries(model)
    assert checkpoint(db, runner, projection) == 0
    assert runner.catch_up(db, projection) == 0
    append(db, store, "a", "Placed", "Paid")
    append(db, store, "b", "Placed")
    assert lag(db, runner, projection) == 3
    assert runner.catch_up(db, projection) == 3
    assert checkpoint(db, runner, projection) == positions(db, store)[-1]
    assert lag(db, runner, projection) == 0
    assert runner.catch_up(db, projection) == 0  # nothing new: nothing applied twice
    append(db, store, "a", "Shipped")
    assert lag(db, runner, projection) == 1
    assert runner.catch_up(db, projection, batch=1) == 1
    summaries, applied = rows(db, model)
    assert summaries == [("a", 3, "Shipped", 3), ("b", 1, "Placed", 1)]
    assert applied == positions(db, store)


def test_rebuild_from_zero_gives_the_same_rows(
        db: Database, store: EventStore, runner: ProjectionRunner, model: ReadModel) -> None:
    projection = Summaries(model)
    for stream, kinds in [("a", ["Placed", "Paid"]), ("b", ["Placed"]), ("a", ["Shipped"]),
                          ("c", ["Placed", "Cancelled"])]:
        append(db, store, stream, *kinds)
    assert runner.catch_up(db, projection, batch=2) == 6
    before = rows(db, model)
    with db.write() as session:  # the read model drifts (a bug, a manual edit)
        session.execute(delete(model.summaries).where(model.summaries.c.stream_id == "b"))
        session.execute(update(model.summaries).values(events=99))
    assert rows(db, model) != before
    assert runner.rebuild(db, projection, batch=4) == 6
    assert rows(db, model) == before
    assert checkpoint(db, runner, projection) == positions(db, store)[-1]
    assert runner.rebuild(db, projection, atomic=True) == 6
    assert rows(db, model) == before


def test_a_crash_mid_batch_leaves_rows_and_checkpoint_consistent(
        db: Database, store: EventStore, runner: ProjectionRunner, model: ReadModel) -> None:
    for stream in "abcde":
        append(db, store, stream, "Placed")
    everything = positions(db, store)
    failing = Summaries(model, fail_at=everything[3])  # the 2nd event of the 2nd batch
    with pytest.raises(Boom):
        runner.catch_up(db, failing, batch=2)
    summaries, applied = rows(db, model)
    assert checkpoint(db, runner, failing) == everything[1]  # first batch only
    assert applied == everything[:2]  # the 3rd event, applied before the crash, is gone
    assert [s[0] for s in summaries] == ["a", "b"]
    assert lag(db, runner, failing) == 3
    healed = Summaries(model)
    assert runner.catch_up(db, healed, batch=2) == 3
    caught_up = rows(db, model)
    runner.rebuild(db, healed)
    assert rows(db, model) == caught_up  # as if it had never failed


def test_a_failed_atomic_rebuild_keeps_the_old_read_model(
        db: Database, store: EventStore, runner: ProjectionRunner, model: ReadModel) -> None:
    for stream in "abc":
        append(db, store, stream, "Placed", "Paid")
    assert runner.catch_up(db, Summaries(model)) == 6
    before = rows(db, model)
    cp = checkpoint(db, runner, Summaries(model))
    failing = Summaries(model, fail_at=positions(db, store)[4])
    with pytest.raises(Boom):
        runner.rebuild(db, failing, batch=2, atomic=True)
    assert rows(db, model) == before
    assert checkpoint(db, runner, failing) == cp
    with pytest.raises(Boom):  # the batched rebuild commits its reset first
        runner.rebuild(db, failing, batch=2)
    summaries, applied = rows(db, model)
    assert applied == positions(db, store)[:4]
    assert checkpoint(db, runner, failing) == applied[-1]


def test_bad_batch_sizes_are_refused(db: Database, runner: ProjectionRunner,
                                     model: ReadModel) -> None:
    with pytest.raises(ValueError):
        runner.catch_up(db, Summaries(model), batch=0)
    with pytest.raises(ValueError):
        runner.rebuild(db, Summaries(model), batch=0)


# -- ordering on PostgreSQL: positions become visible in order ---------------------------


def waiting_for_advisory_lock(db: Database) -> bool:
    with db.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalar_one())


class UnserialisedStore(EventStore):
    """The store without its append lock: what the lock is there to prevent."""

    def _lock_for_append(self, conn: Executor) -> None:
        return None


def test_without_the_append_lock_a_projection_would_skip_an_event(
        postgres_url: str, model: ReadModel) -> None:
    db = open_db(postgres_url, model)
    try:
        store = UnserialisedStore(model.tables)
        runner = ProjectionRunner(store, model.tables)
        projection = Summaries(model)
        with db.write() as first:
            early = store.append(first, "a", 0, [event()])  # takes a position, not committed
            late = append(db, store, "b", "Placed")  # a later position, committed
            assert runner.catch_up(db, projection) == 1  # sees only the later one
        assert runner.catch_up(db, projection) == 0  # the earlier one is behind the checkpoint
        assert rows(db, model)[1] == [late[0].position]
        assert early[0].position < late[0].position
    finally:
        db.dispose()


def test_an_append_waits_for_the_earlier_one_so_no_event_is_skipped(
        postgres_url: str, model: ReadModel) -> None:
    db = open_db(postgres_url, model)
    try:
        store = EventStore(model.tables)
        runner = ProjectionRunner(store, model.tables)
        projection = Summaries(model)
        errors: list[BaseException] = []

        def second_writer() -> None:
            try:
                append(db, store, "b", "Placed")
            except BaseException as exc:
                errors.append(exc)

        with db.write() as first:
            store.append(first, "a", 0, [event()])
            thread = threading.Thread(target=second_writer)
            thread.start()
            wait_until(lambda: waiting_for_advisory_lock(db), timeout=10,
                       what="the second append waiting for the append lock")
            assert runner.catch_up(db, projection) == 0  # nothing committed yet
        thread.join(timeout=10)
        assert not thread.is_alive() and errors == []
        assert runner.catch_up(db, projection) == 2
        assert rows(db, model)[1] == positions(db, store)
    finally:
        db.dispose()


def test_concurrent_appends_and_catch_up_never_miss_an_event(
        any_database_url: str, model: ReadModel) -> None:
    db = open_db(any_database_url, model)
    store = EventStore(model.tables)
    runner = ProjectionRunner(store, model.tables)
    projection = Summaries(model)
    postgres = db.engine.dialect.name == "postgresql"
    writers, appends = 4, 12
    done = threading.Event()

    def write(i: int) -> None:
        rng = random.Random(i)
        version = 0
        for n in range(appends):
            with db.write() as session:
                version += len(store.append(session, f"stream-{i}", version,
                                            [event(), event()][: 1 + n % 2]))
                pause = rng.uniform(0, 0.004)  # widen the window between insert and commit
                if postgres:
                    session.execute(text("SELECT pg_sleep(:s)"), {"s": pause})
                else:
                    time.sleep(pause)

    def project() -> int:
        applied = 0
        while not done.is_set():
            applied += runner.catch_up(db, projection, batch=5)
        return applied

    errors: list[BaseException] = []
    results: list[int] = []

    def guarded(target: Any, *args: Any) -> None:
        try:
            value = target(*args)
            if value is not None:
                results.append(value)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=guarded, args=(write, i)) for i in range(writers)]
        reader = threading.Thread(target=guarded, args=(project,))
        reader.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        done.set()
        reader.join(timeout=20)
        assert errors == []
        final = runner.catch_up(db, projection)
        everything = positions(db, store)
        assert len(everything) == writers * (appends + appends // 2)  # 1 or 2 per append
        assert results[0] + final == len(everything)
        assert rows(db, model)[1] == everything  # count and identity: nothing skipped
    finally:
        db.dispose()


# -- charter projections ---------------------------------------------------------------


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="charter")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def orders_projections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       model: ReadModel) -> Iterator[tuple[Database, types.ModuleType]]:
    """A tiny ``services.orders.projections`` module on a SQLite orders database."""
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    monkeypatch.setenv("ORDERS_DATABASE_URL", url)
    module = types.ModuleType("services.orders.projections")
    module.projections = lambda db: [Summaries(model)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "services.orders.projections", module)
    db = open_db(url, model)
    yield db, module
    db.dispose()


def test_cli_refuses_an_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["projections", "rebuild", "warehouse"]) == 2
    assert "unknown service 'warehouse'" in capsys.readouterr().err


@pytest.mark.parametrize("service", ["cart", "gateway"])
def test_cli_says_a_service_has_no_projections(
        service: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    assert cli(["projections", "rebuild", service]) == 2
    assert f"service {service} has no projections" in capsys.readouterr().err
    assert cli(["projections", "status", service]) == 2


def test_cli_says_so_when_the_module_offers_none(
        orders_projections: tuple[Database, types.ModuleType],
        capsys: pytest.CaptureFixture[str]) -> None:
    _, module = orders_projections
    module.projections = lambda db: []  # type: ignore[attr-defined]
    assert cli(["projections", "rebuild", "orders"]) == 2
    assert "service orders has no projections" in capsys.readouterr().err


def test_cli_rebuilds_and_reports(
        orders_projections: tuple[Database, types.ModuleType], model: ReadModel,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = orders_projections
    store = EventStore(model.tables)
    append(db, store, "order-1", "Placed", "Paid")
    append(db, store, "order-2", "Placed")
    last = positions(db, store)[-1]
    assert cli(["projections", "status", "orders"]) == 0
    assert capsys.readouterr().out.strip() == "orders: stream_summaries: checkpoint 0, lag 3"
    assert cli(["projections", "rebuild", "orders", "--batch", "2"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"orders: stream_summaries rebuilt: 3 events applied, checkpoint {last}, lag 0")
    assert rows(db, model)[0] == [("order-1", 2, "Paid", 2), ("order-2", 1, "Placed", 1)]
    append(db, store, "order-2", "Cancelled")
    assert cli(["projections", "status", "orders"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"orders: stream_summaries: checkpoint {last}, lag 1")
    assert cli(["projections", "rebuild", "orders", "--atomic",
                "--only", "stream_summaries"]) == 0
    assert "4 events applied" in capsys.readouterr().out
    assert cli(["projections", "rebuild", "orders", "--only", "nope"]) == 2
    assert "unknown projection(s) nope" in capsys.readouterr().err
