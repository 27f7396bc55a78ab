"""The event store on SQLite and PostgreSQL: round trip, optimistic concurrency (stale
writers, racing writers, the constraint path) without poisoning the caller's transaction,
atomicity with the caller's unit of work, input checks, replay and table naming."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, inspect, select

from charter.db import (
    NAMING_CONVENTION,
    NAMING_CONVENTION_FK_REFERRED,
    Database,
    service_metadata,
)
from charter.eventstore import (
    ConcurrencyConflict,
    EventMetadata,
    EventStore,
    EventStoreTables,
    NewEvent,
    RecordedEvent,
    add_event_store_tables,
    replay,
)
from charter.unit_of_work import WriteConflict
from tests.support.races import run_threads

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@dataclass
class Schema:
    metadata: MetaData
    tables: EventStoreTables
    notes: Table  # another table of the service, written in the same unit of work


def make_schema() -> Schema:
    metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)
    tables = add_event_store_tables(metadata)
    notes = Table("notes", metadata, Column("id", Integer, primary_key=True),
                  Column("text", String(40), nullable=False))
    return Schema(metadata, tables, notes)


@pytest.fixture
def schema() -> Schema:
    return make_schema()


@pytest.fixture
def db(any_database_url: str, schema: Schema) -> Iterator[Database]:
    database = Database(any_database_url)
    schema.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def store(schema: Schema) -> EventStore:
    return EventStore(schema.tables, clock=lambda: T0)


def event(kind: str = "OrderPlaced", **data: Any) -> NewEvent:
    return NewEvent(kind, data, EventMetadata(occurred_at=T0))


def notes_of(db: Database, schema: Schema) -> list[str]:
    with db.session() as session:
        return list(session.execute(select(schema.notes.c.text).order_by(schema.notes.c.id))
                    .scalars())


def test_append_and_load_round_trip_keeps_data_and_metadata(
        db: Database, store: EventStore) -> None:
    meta = EventMetadata(occurred_at=datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC),
                         correlation_id="corr-1", causation_id="cause-1", saga_id="saga-1")
    with db.write() as session:
        written = store.append(session, "order-1", 0, [
            NewEvent("OrderPlaced", {"total": 1250, "lines": [{"sku": "A", "qty": 2}]}, meta),
            event("StockReserved", reservation="r-1"),
        ])
    with db.session() as session:
        loaded = store.load(session, "order-1")
        assert store.version(session, "order-1") == 2
        assert store.version(session, "no-such-order") == 0
        assert store.load(session, "order-1", after_version=1) == loaded[1:]
    assert loaded == written
    first = loaded[0]
    assert (first.stream_id, first.version, first.type) == ("order-1", 1, "OrderPlaced")
    assert first.data == {"total": 1250, "lines": [{"sku": "A", "qty": 2}]}
    assert first.metadata == meta  # occurred_at, ids and the event id survive
    assert first.recorded_at == T0
    assert [e.version for e in loaded] == [1, 2]
    assert loaded[0].position < loaded[1].position


def test_positions_give_one_global_order_across_streams(
        db: Database, store: EventStore) -> None:
    for stream in ("a", "b", "a", "c", "b"):
        with db.write() as session:
            store.append(session, stream, store.version(session, stream), [event(stream)])
    with db.session() as session:
        everything = store.read_all(session, 0, 100)
        page = store.read_all(session, everything[1].position, 2)
        assert store.last_position(session) == everything[-1].position
        assert store.count_after(session, everything[2].position) == 2
    assert [e.stream_id for e in everything] == ["a", "b", "a", "c", "b"]
    assert [e.version for e in everything] == [1, 1, 2, 1, 2]
    assert page == everything[2:4]


def test_a_stale_writer_gets_a_conflict_and_its_transaction_stays_usable(
        db: Database, store: EventStore, schema: Schema) -> None:
    with db.write() as session:
        store.append(session, "order-1", 0, [event()])
    # two writers both load version 1 ...
    with db.session() as session:
        seen_by_a = store.version(session, "order-1")
    with db.session() as session:
        seen_by_b = store.version(session, "order-1")
    assert seen_by_a == seen_by_b == 1
    with db.write() as session:  # ... A appends first
        winner = store.append(session, "order-1", seen_by_a, [event("OrderPaid")])
    with db.write() as session:  # ... B is stale
        session.execute(insert(schema.notes).values(text="before"))
        with pytest.raises(ConcurrencyConflict) as caught:
            store.append(session, "order-1", seen_by_b, [event("OrderCancelled")])
        session.execute(insert(schema.notes).values(text="after"))
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
        "order-1", 1, 2)
    assert isinstance(caught.value, WriteConflict)  # what units of work already map
    assert notes_of(db, schema) == ["before", "after"]  # B's transaction committed
    with db.session() as session:
        assert [e.type for e in store.load(session, "order-1")] == ["OrderPlaced", "OrderPaid"]
        assert store.load(session, "order-1")[1] == winner[0]


def test_the_unique_constraint_catches_a_writer_that_slipped_past_the_check(
        db: Database, store: EventStore, schema: Schema,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with db.write() as session:
        store.append(session, "order-1", 0, [event(), event("OrderPaid")])
    real_version = store.version
    calls = {"n": 0}

    def stale_once(conn: Any, stream_id: str) -> int:  # the race window, made certain
        calls["n"] += 1
        return 1 if calls["n"] == 1 else real_version(conn, stream_id)

    monkeypatch.setattr(store, "version", stale_once)
    with db.write() as session:
        session.execute(insert(schema.notes).values(text="kept"))
        with pytest.raises(ConcurrencyConflict) as caught:
            store.append(session, "order-1", 1, [event("OrderCancelled")])
        session.execute(insert(schema.notes).values(text="still usable"))
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert notes_of(db, schema) == ["kept", "still usable"]
    monkeypatch.undo()
    with db.session() as session:
        assert store.version(session, "order-1") == 2


def test_a_duplicate_event_id_rolls_back_the_whole_append_only(
        db: Database, store: EventStore, schema: Schema) -> None:
    with db.write() as session:
        first = store.append(session, "order-1", 0, [event()])
    again = NewEvent("OrderPaid", {}, first[0].metadata)  # same event_id
    with db.write() as session:
        session.execute(insert(schema.notes).values(text="kept"))
        with pytest.raises(WriteConflict) as caught:
            store.append(session, "order-1", 1, [event("Fresh"), again])
    assert not isinstance(caught.value, ConcurrencyConflict)
    assert notes_of(db, schema) == ["kept"]
    with db.session() as session:  # "Fresh" (inserted before the duplicate) is gone too
        assert [e.type for e in store.load(session, "order-1")] == ["OrderPlaced"]


@pytest.mark.parametrize("handle", ["session", "connection"])
def test_events_roll_back_with_the_callers_unit_of_work(
        db: Database, store: EventStore, schema: Schema, handle: str) -> None:
    """Also a deferred SQLite transaction: a SAVEPOINT must not become the outer one."""
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        if handle == "session":
            with db.session() as session:  # no BEGIN IMMEDIATE from the caller
                store.append(session, "order-1", 0, [event()])
                session.execute(insert(schema.notes).values(text="lost"))
                raise Boom
        else:
            with db.engine.begin() as conn:
                store.append(conn, "order-1", 0, [event()])
                conn.execute(insert(schema.notes).values(text="lost"))
                raise Boom
    with db.session() as session:
        assert store.version(session, "order-1") == 0
    assert notes_of(db, schema) == []
    with db.engine.begin() as conn:  # and a committed Connection does keep them
        store.append(conn, "order-1", 0, [event()])
    with db.session() as session:
        assert store.version(session, "order-1") == 1


def test_racing_writers_on_one_stream_exactly_one_wins(
        db: Database, store: EventStore) -> None:
    with db.write() as session:
        store.append(session, "order-1", 0, [event()])

    all_loaded = threading.Barrier(6, timeout=20)

    def writer(i: int) -> list[RecordedEvent]:
        with db.session() as session:
            seen = store.version(session, "order-1")
        all_loaded.wait()  # every writer saw version 1 before anyone appends
        with db.write() as session:
            return store.append(session, "order-1", seen, [event("Try", writer=i)])

    results = run_threads(6, writer)
    winners = [r for r in results if isinstance(r, list)]
    losers = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(winners) == 1, results
    assert len(losers) == 5, results
    with db.session() as session:
        stored = store.load(session, "order-1")
    assert [e.version for e in stored] == [1, 2]
    assert stored[1] == winners[0][0]


def test_bad_input_is_refused(db: Database, store: EventStore) -> None:
    with pytest.raises(ValueError, match="aware"):
        EventMetadata(occurred_at=datetime(2026, 12, 1))  # noqa: DTZ001 - the point
    with pytest.raises(ValueError, match="type"):
        NewEvent("", {}, EventMetadata(occurred_at=T0))
    with pytest.raises(ValueError, match="event_id"):
        EventMetadata(occurred_at=T0, event_id="x" * 37)
    with db.write() as session:
        with pytest.raises(ValueError, match="stream_id"):
            store.append(session, "x" * 65, 0, [event()])
        with pytest.raises(ValueError, match="stream_id"):
            store.append(session, "", 0, [event()])
        with pytest.raises(ValueError, match="expected_version"):
            store.append(session, "order-1", -1, [event()])
        with pytest.raises(ValueError, match="limit"):
            store.read_all(session, 0, 0)
        assert store.append(session, "order-1", 5, []) == []  # nothing to append
        assert store.version(session, "order-1") == 0


def test_replay_folds_the_events_of_a_stream(db: Database, store: EventStore) -> None:
    with db.write() as session:
        store.append(session, "order-1", 0, [
            event("OrderPlaced", total=100), event("TotalChanged", total=80),
            event("OrderPaid"),
        ])
    with db.session() as session:
        events = store.load(session, "order-1")

    def apply(state: dict[str, Any], e: RecordedEvent) -> dict[str, Any]:
        if e.type == "OrderPaid":
            return {**state, "status": "paid", "version": e.version}
        return {**state, "total": e.data["total"], "version": e.version}

    initial: dict[str, Any] = {"status": "new"}
    assert replay(events, initial, apply) == {"status": "paid", "total": 80, "version": 3}
    assert replay([], initial, apply) is initial
    assert initial == {"status": "new"}  # the fold never mutates


@pytest.mark.parametrize("convention, unique_names", [
    (NAMING_CONVENTION, {"uq_events_stream_id_version", "uq_events_event_id"}),
    (NAMING_CONVENTION_FK_REFERRED, {"uq_events_stream_id", "uq_events_event_id"}),
])
def test_tables_follow_the_services_naming_convention(
        any_database_url: str, convention: Any, unique_names: set[str]) -> None:
    metadata = service_metadata(convention)
    add_event_store_tables(metadata)
    database = Database(any_database_url)
    try:
        metadata.create_all(database.engine)
        found = inspect(database.engine)
        names = {u["name"] for u in found.get_unique_constraints("events")}
        if database.engine.dialect.name == "postgresql":
            assert names == unique_names
        else:  # SQLite reflects a constraint name only when the DDL named it
            assert names <= unique_names | {None}
        assert set(found.get_table_names()) == {"events", "projection_checkpoints"}
        with database.session() as session:
            assert session.execute(select(func.count()).select_from(
                metadata.tables["events"])).scalar_one() == 0
    finally:
        database.dispose()
