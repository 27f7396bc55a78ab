"""The event store's two tables, added to a service's own ``MetaData``.

Each service keeps its own Alembic history (:mod:`charter.db`, ``services/<name>/migrations``),
so the event store has no metadata of its own: a service calls
:func:`add_event_store_tables` on its metadata and its migrations create the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from charter.db import UtcDateTime

__all__ = ["EVENTS", "PROJECTION_CHECKPOINTS", "EventStoreTables", "add_event_store_tables"]

EVENTS = "events"
PROJECTION_CHECKPOINTS = "projection_checkpoints"


def _position() -> BigInteger:
    """64-bit on PostgreSQL; SQLite only auto-increments an ``INTEGER PRIMARY KEY``."""
    return BigInteger().with_variant(Integer(), "sqlite")  # type: ignore[return-value]


@dataclass(frozen=True)
class EventStoreTables:
    """The ``events`` and ``projection_checkpoints`` tables of one service."""

    events: Table
    checkpoints: Table


def add_event_store_tables(metadata: MetaData) -> EventStoreTables:
    """Add ``events`` and ``projection_checkpoints`` to ``metadata`` and return them.

    ``events.position`` is the global order (autoincrement; ``AUTOINCREMENT`` on SQLite so
    a position is never reused); ``(stream_id, version)`` is unique and is also the index
    that stream reads use (a separate index on ``stream_id`` alone would only cost writes).
    Constraint names follow the naming convention already on ``metadata``.
    """
    events = Table(
        EVENTS,
        metadata,
        Column("position", _position(), primary_key=True, autoincrement=True),
        Column("stream_id", String(64), nullable=False),
        Column("version", Integer, nullable=False),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("type", String(80), nullable=False),
        Column("data", JSON, nullable=False),
        Column("metadata", JSON, nullable=False),
        Column("recorded_at", UtcDateTime(), nullable=False),
        UniqueConstraint("stream_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        sqlite_autoincrement=True,
    )
    checkpoints = Table(
        PROJECTION_CHECKPOINTS,
        metadata,
        Column("name", String(80), primary_key=True),
        Column("position", _position(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        CheckConstraint("position >= 0", name="position_not_negative"),
    )
    return EventStoreTables(events=events, checkpoints=checkpoints)
