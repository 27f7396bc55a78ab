"""Append-only event streams with optimistic concurrency, on SQLite and PostgreSQL.

Every method takes the caller's ``Session`` or ``Connection``: the events commit or roll
back with the rest of the unit of work (outbox rows, saga state). See
``docs/event-store.md`` for the concurrency and ordering rules.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, RowMapping, bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.clock import parse_rfc3339, rfc3339, utcnow
from charter.unit_of_work import WriteConflict

from .tables import EventStoreTables

__all__ = [
    "ConcurrencyConflict", "EventMetadata", "EventStore", "Executor", "NewEvent",
    "RecordedEvent", "replay",
]

Executor = Connection | Session
"""What every store method runs on: the caller's transaction."""

MAX_STREAM_ID = 64
MAX_TYPE = 80
MAX_EVENT_ID = 36

S = TypeVar("S")


def _new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class EventMetadata:
    """Where an event comes from: when it happened and the ids that tie it to others."""

    occurred_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    saga_id: str | None = None
    event_id: str = field(default_factory=_new_event_id)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be an aware datetime (charter.clock.utcnow)")
        if not 0 < len(self.event_id) <= MAX_EVENT_ID:
            raise ValueError(f"event_id must be 1..{MAX_EVENT_ID} characters")

    def to_json(self) -> dict[str, Any]:
        """The ``metadata`` column's value (``event_id`` has a column of its own)."""
        return {
            "occurred_at": rfc3339(self.occurred_at),
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "saga_id": self.saga_id,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], event_id: str) -> EventMetadata:
        """The metadata stored by :meth:`to_json` for the event ``event_id``."""
        return cls(
            occurred_at=parse_rfc3339(value["occurred_at"]),
            correlation_id=value.get("correlation_id"),
            causation_id=value.get("causation_id"),
            saga_id=value.get("saga_id"),
            event_id=event_id,
        )


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its type, its JSON-serialisable data and its metadata."""

    type: str
    data: Mapping[str, Any]
    metadata: EventMetadata

    def __post_init__(self) -> None:
        if not 0 < len(self.type) <= MAX_TYPE:
            raise ValueError(f"event type must be 1..{MAX_TYPE} characters")


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: its global ``position`` and its 1-based ``version`` in its stream."""

    position: int
    stream_id: str
    version: int
    type: str
    data: Mapping[str, Any]
    metadata: EventMetadata
    recorded_at: datetime


class ConcurrencyConflict(WriteConflict):
    """A stale writer: the stream moved on since the writer loaded it (``expected``)."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, the writer expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


def replay(events: Iterable[RecordedEvent], initial: S,
           apply: Callable[[S, RecordedEvent], S]) -> S:
    """Rebuild a state by folding ``apply`` over ``events``, starting from ``initial``."""
    return reduce(apply, events, initial)


def _dialect(conn: Executor) -> Dialect:
    return conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect


def _dbapi_in_transaction(conn: Executor) -> bool:
    connection = conn.connection() if isinstance(conn, Session) else conn
    return bool(getattr(connection.connection.dbapi_connection, "in_transaction", True))


def _check_stream_id(stream_id: str) -> None:
    if not 0 < len(stream_id) <= MAX_STREAM_ID:
        raise ValueError(f"stream_id must be 1..{MAX_STREAM_ID} characters")


class EventStore:
    """Streams of events in a service's ``events`` table (see :mod:`.tables`)."""

    def __init__(self, tables: EventStoreTables, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.tables = tables
        self._events = tables.events
        self._clock = clock
        # One advisory-lock key per events table (advisory locks are per database).
        self._lock_key = zlib.crc32(f"charter.eventstore:{self._events.name}".encode())
        # The hot statements, built once with bound parameters: building a statement and
        # its cache key on every call cost several times its execution (SQLite).
        table = self._events
        self._insert = insert(table).returning(table.c.position)
        self._load = (select(table)
                      .where(table.c.stream_id == bindparam("b_stream"),
                             table.c.version > bindparam("b_after"))
                      .order_by(table.c.version))
        self._version = (select(func.coalesce(func.max(table.c.version), 0))
                         .where(table.c.stream_id == bindparam("b_stream")))
        self._advisory_lock = select(func.pg_advisory_xact_lock(self._lock_key))

    def append(self, conn: Executor, stream_id: str, expected_version: int,
               events: Sequence[NewEvent]) -> list[RecordedEvent]:
        """Append ``events`` to ``stream_id`` after version ``expected_version``.

        ``expected_version`` is the number of events the writer saw (0: a new stream).
        A stale writer gets :class:`ConcurrencyConflict` (a duplicate ``event_id``:
        :class:`~charter.unit_of_work.WriteConflict`); the caller's transaction stays
        usable either way. Appending nothing is a no-op. Appends are serialised per
        database until the caller's transaction ends (see ``docs/event-store.md``).
        """
        _check_stream_id(stream_id)
        if expected_version < 0:
            raise ValueError("expected_version must be >= 0")
        if not events:
            return []
        self._lock_for_append(conn)
        actual = self.version(conn, stream_id)
        if actual != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, actual)
        recorded_at = self._clock()
        recorded: list[RecordedEvent] = []
        try:
            with conn.begin_nested():  # a refused insert must not poison the caller's txn
                for version, event in enumerate(events, start=expected_version + 1):
                    position = conn.execute(self._insert, {
                        "stream_id": stream_id,
                        "version": version,
                        "event_id": event.metadata.event_id,
                        "type": event.type,
                        "data": dict(event.data),
                        "metadata": event.metadata.to_json(),
                        "recorded_at": recorded_at,
                    }).scalar_one()
                    recorded.append(RecordedEvent(
                        position=int(position), stream_id=stream_id, version=version,
                        type=event.type, data=dict(event.data), metadata=event.metadata,
                        recorded_at=recorded_at,
                    ))
        except IntegrityError as exc:
            actual = self.version(conn, stream_id)
            if actual != expected_version:
                raise ConcurrencyConflict(stream_id, expected_version, actual) from exc
            raise WriteConflict(
                f"an event of this append to {stream_id!r} is already recorded (event_id)"
            ) from exc
        return recorded

    def _lock_for_append(self, conn: Executor) -> None:
        """Serialise appends so positions commit in order (and SAVEPOINTs nest on SQLite).

        PostgreSQL: a transaction-scoped advisory lock, held until the caller's commit or
        rollback. SQLite: the database write lock (``BEGIN IMMEDIATE``) unless the
        transaction already holds it; without a ``BEGIN`` pysqlite would let the SAVEPOINT
        below become the outermost transaction and commit on release.
        """
        name = _dialect(conn).name
        if name == "postgresql":
            conn.execute(self._advisory_lock)
        elif name == "sqlite" and not _dbapi_in_transaction(conn):
            conn.execute(text("BEGIN IMMEDIATE"))

    def load(self, conn: Executor, stream_id: str, after_version: int = 0
             ) -> list[RecordedEvent]:
        """The events of ``stream_id`` with a version above ``after_version``, in order."""
        rows = conn.execute(self._load, {"b_stream": stream_id, "b_after": after_version})
        return [self._recorded(row._mapping) for row in rows]

    def version(self, conn: Executor, stream_id: str) -> int:
        """How many events ``stream_id`` holds (0 when it does not exist)."""
        value = conn.execute(self._version, {"b_stream": stream_id}).scalar_one()
        return int(value)

    def read_all(self, conn: Executor, after_position: int, limit: int
                 ) -> list[RecordedEvent]:
        """Up to ``limit`` events of every stream after ``after_position``, in global order."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        table = self._events
        rows = conn.execute(
            select(table)
            .where(table.c.position > after_position)
            .order_by(table.c.position)
            .limit(limit)
        )
        return [self._recorded(row._mapping) for row in rows]

    def last_position(self, conn: Executor) -> int:
        """The position of the newest event (0 when there is none)."""
        table = self._events
        return int(conn.execute(
            select(func.coalesce(func.max(table.c.position), 0))
        ).scalar_one())

    def count_after(self, conn: Executor, position: int) -> int:
        """How many events have a position above ``position``."""
        table = self._events
        return int(conn.execute(
            select(func.count()).select_from(table).where(table.c.position > position)
        ).scalar_one())

    @staticmethod
    def _recorded(row: RowMapping) -> RecordedEvent:
        return RecordedEvent(
            position=int(row["position"]),
            stream_id=row["stream_id"],
            version=int(row["version"]),
            type=row["type"],
            data=row["data"],
            metadata=EventMetadata.from_json(row["metadata"], row["event_id"]),
            recorded_at=row["recorded_at"],
        )
