"""The transactional outbox: events written in the same transaction as the state change.

A service adds the ``outbox`` table to its own ``MetaData`` (:func:`add_outbox_table`, so
the table is part of the service's Alembic history) and calls :meth:`Outbox.add` with the
session of the unit of work that changes its state: the events commit or roll back with
that change, never one without the other. :class:`charter.messaging.relay.OutboxRelay`
publishes the unsent rows in ``position`` order and marks them sent. See
``docs/messaging.md``, *Outbox and relay*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from charter.db import UtcDateTime, utcnow
from charter.messaging.envelope import Envelope
from charter.observability import tracing

__all__ = ["LAST_ERROR_MAX", "OUTBOX_WRITTEN", "Outbox", "OutboxRow", "add_outbox_table",
           "cutoff"]

LAST_ERROR_MAX = 300
"""Length of the ``last_error`` column (longer messages are cut)."""

OUTBOX_WRITTEN = "charter.outbox_written"
"""Key :meth:`Outbox.add` sets in ``session.info``: after that session's commit,
:func:`charter.messaging.runtime.watch` callbacks wake the relay."""


def add_outbox_table(metadata: MetaData) -> Table:
    """Add the ``outbox`` table to a service's ``metadata`` and return it.

    ``position`` is the publishing order. The partial index on unsent rows (both SQLite and
    PostgreSQL support ``WHERE`` on an index) keeps the relay's poll and the backlog query
    cheap however many sent rows are kept.
    """
    table = Table(
        "outbox",
        metadata,
        Column("position", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("routing_key", String(160), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("sent_at", UtcDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        Column("last_error", String(LAST_ERROR_MAX), nullable=True),
        sqlite_autoincrement=True,  # positions are never reused, even after a purge
    )
    unsent = table.c.sent_at.is_(None)
    Index("ix_outbox_unsent", table.c.position, sqlite_where=unsent, postgresql_where=unsent)
    Index("ix_outbox_sent_at", table.c.sent_at)
    return table


@dataclass(frozen=True)
class OutboxRow:
    """One unsent outbox row as the relay sees it."""

    position: int
    event_id: str
    routing_key: str
    body: str
    created_at: datetime
    attempts: int
    last_error: str | None

    def envelope(self) -> Envelope:
        """The stored envelope (raises ``InvalidEnvelope`` if the body is not one)."""
        return Envelope.from_json(self.body)


def cutoff(older_than: datetime | timedelta, now: datetime) -> datetime:
    """``older_than`` as an absolute time: a datetime as is, a timedelta back from ``now``."""
    return now - older_than if isinstance(older_than, timedelta) else older_than


class Outbox:
    """Reads and writes one service's ``outbox`` table, always in the caller's session.

    ``clock`` gives "now" for ``created_at`` and the backlog's age (tests pass a fixed one).
    """

    def __init__(self, table: Table, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.table = table
        self.clock = clock
        # The relay's and writers' statements, built once with bound parameters (building
        # a statement and its cache key per call cost more than running it on SQLite).
        t = table
        self._insert = insert(t)
        self._pending = (select(t.c.position, t.c.event_id, t.c.routing_key, t.c.body,
                                t.c.created_at, t.c.attempts, t.c.last_error)
                         .where(t.c.sent_at.is_(None))
                         .order_by(t.c.position)
                         .limit(bindparam("b_limit")))
        self._mark_sent = (update(t)
                           .where(t.c.position.in_(bindparam("b_positions", expanding=True)),
                                  t.c.sent_at.is_(None))
                           .values(sent_at=bindparam("b_at")))

    def add(self, session: Session, *envelopes: Envelope) -> None:
        """Insert ``envelopes`` in the caller's transaction (they commit with its change)."""
        if not envelopes:
            return
        session.info[OUTBOX_WRITTEN] = True  # after the commit: wake the relay (runtime.watch)
        now = self.clock()
        # The trace context is captured now, in the writing request's transaction: the
        # relay publishes later, from another thread (an envelope's own wins).
        traceparent = tracing.traceparent_of()
        session.execute(self._insert, [
            {"event_id": env.id, "routing_key": env.routing_key,
             "body": (env if env.traceparent or traceparent is None
                      else replace(env, traceparent=traceparent)).to_json(),
             "created_at": now, "attempts": 0}
            for env in envelopes
        ])

    def pending(self, session: Session, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` unsent rows, oldest position first."""
        rows = session.execute(self._pending, {"b_limit": limit}).all()
        return [OutboxRow(*row) for row in rows]

    def mark_sent(self, session: Session, positions: Iterable[int], at: datetime) -> int:
        """Mark the rows at ``positions`` sent at ``at``; returns how many were unsent."""
        chosen = list(positions)
        if not chosen:
            return 0
        result = session.execute(self._mark_sent, {"b_positions": chosen, "b_at": at})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def record_failure(self, session: Session, position: int, error: str) -> None:
        """Count a failed publish of the row at ``position`` and keep its (cut) error."""
        t = self.table
        session.execute(
            update(t).where(t.c.position == position)
            .values(attempts=t.c.attempts + 1, last_error=error[:LAST_ERROR_MAX])
        )

    def backlog(self, session: Session) -> tuple[int, float | None]:
        """``(unsent rows, age in seconds of the oldest unsent row or None when empty)``."""
        t = self.table
        count, oldest = session.execute(
            select(func.count(), func.min(t.c.created_at)).where(t.c.sent_at.is_(None))
        ).one()
        if not count or oldest is None:
            return 0, None
        return int(count), max(0.0, (self.clock() - oldest).total_seconds())

    def purge_sent(self, session: Session, older_than: datetime | timedelta) -> int:
        """Delete rows sent before ``older_than`` (a time, or an age); returns how many.

        Unsent rows are never deleted.
        """
        t = self.table
        before = cutoff(older_than, self.clock())
        result = session.execute(
            delete(t).where(t.c.sent_at.is_not(None), t.c.sent_at < before)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
