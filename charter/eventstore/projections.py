"""Read models built from the event log, with a stored checkpoint per projection.

A projection's rows live in the same database as the events, so each batch applies
events and moves the checkpoint in one transaction: after a crash the rows and the
checkpoint still agree. See ``docs/event-store.md`` (Projections).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.clock import utcnow
from charter.db import Database

from .store import EventStore, RecordedEvent
from .tables import EventStoreTables

__all__ = ["Projection", "ProjectionRunner", "ProjectionStatus", "SessionSource"]

SessionSource = Database | Callable[[], AbstractContextManager[Session]]
"""A :class:`~charter.db.Database` (its ``write()`` is used) or a factory of write
transactions (a context manager yielding a ``Session``, committed when it ends)."""


class Projection(Protocol):
    """A read model: ``reset`` empties it, ``apply`` folds one event into it.

    ``apply`` must write only through ``session`` (it shares the checkpoint's transaction)
    and be deterministic, so a rebuild from zero gives the same rows.
    """

    name: str

    def reset(self, session: Session) -> None:
        """Delete every row of the read model."""
        ...

    def apply(self, session: Session, event: RecordedEvent) -> None:
        """Update the read model for one event."""
        ...


@dataclass(frozen=True)
class ProjectionStatus:
    """Where a projection stands: its checkpoint and the events not yet applied."""

    name: str
    checkpoint: int
    lag: int


def _transactions(source: SessionSource) -> Callable[[], AbstractContextManager[Session]]:
    return source.write if isinstance(source, Database) else source


class ProjectionRunner:
    """Catches projections up with the event log and rebuilds them from zero."""

    def __init__(self, store: EventStore, tables: EventStoreTables, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self._checkpoints = tables.checkpoints
        self._clock = clock

    def checkpoint(self, session: Session, projection: Projection) -> int:
        """The position of the last event ``projection`` applied (0: none yet)."""
        table = self._checkpoints
        value = session.execute(
            select(table.c.position).where(table.c.name == projection.name)
        ).scalar_one_or_none()
        return 0 if value is None else int(value)

    def lag(self, session: Session, projection: Projection) -> int:
        """How many events ``projection`` has not applied yet."""
        return self.store.count_after(session, self.checkpoint(session, projection))

    def status(self, session: Session, projection: Projection) -> ProjectionStatus:
        """The checkpoint and lag of ``projection``."""
        checkpoint = self.checkpoint(session, projection)
        return ProjectionStatus(projection.name, checkpoint,
                                self.store.count_after(session, checkpoint))

    def catch_up(self, source: SessionSource, projection: Projection, batch: int = 500
                 ) -> int:
        """Apply every event after the checkpoint, ``batch`` events per transaction.

        Each transaction locks the checkpoint, applies its events and moves the
        checkpoint; an exception in ``apply`` rolls back that batch only (rows and
        checkpoint together) and propagates. Returns how many events were applied.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        transactions = _transactions(source)
        applied = 0
        while True:
            with transactions() as session:
                count = self._apply_batch(session, projection, batch)
            applied += count
            if count < batch:
                return applied

    def rebuild(self, source: SessionSource, projection: Projection, batch: int = 500,
                *, atomic: bool = False) -> int:
        """Reset ``projection``, set its checkpoint to 0 and replay every event into it.

        By default the reset commits first and the replay follows in batches: readers
        see the read model empty, then filling up (``lag`` says how far). With
        ``atomic=True`` everything is one transaction: readers keep the old rows until
        it commits, a failure leaves them untouched, but the transaction holds the
        checkpoint row lock (SQLite: the database write lock) for the whole replay.
        Returns how many events were applied.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        transactions = _transactions(source)
        if atomic:
            applied = 0
            with transactions() as session:
                self._lock_checkpoint(session, projection)
                projection.reset(session)
                self._move(session, projection, 0)
                while (count := self._apply_batch(session, projection, batch)) == batch:
                    applied += count
                return applied + count
        with transactions() as session:
            self._lock_checkpoint(session, projection)
            projection.reset(session)
            self._move(session, projection, 0)
        return self.catch_up(source, projection, batch)

    def _apply_batch(self, session: Session, projection: Projection, batch: int) -> int:
        position = self._lock_checkpoint(session, projection)
        events = self.store.read_all(session, position, batch)
        for event in events:
            projection.apply(session, event)
        if events:
            self._move(session, projection, events[-1].position)
        return len(events)

    def _lock_checkpoint(self, session: Session, projection: Projection) -> int:
        """The checkpoint, its row locked (created at 0 when missing) until the commit.

        Two runners of one projection therefore take turns instead of applying the same
        events twice (SQLite: the write transaction already serialises them).
        """
        table = self._checkpoints
        query = select(table.c.position).where(table.c.name == projection.name)
        value = session.execute(query.with_for_update()).scalar_one_or_none()
        if value is not None:
            return int(value)
        try:
            with session.begin_nested():
                session.execute(insert(table).values(
                    name=projection.name, position=0, updated_at=self._clock()))
        except IntegrityError:
            pass  # created concurrently: lock that one
        return int(session.execute(query.with_for_update()).scalar_one())

    def _move(self, session: Session, projection: Projection, position: int) -> None:
        table = self._checkpoints
        session.execute(
            update(table).where(table.c.name == projection.name)
            .values(position=position, updated_at=self._clock())
        )
