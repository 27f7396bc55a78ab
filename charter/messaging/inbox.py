"""The inbox: idempotent consumers through processed-message ids in the consumer's database.

A consumer claims a message id in the same transaction as the message's effect::

    with db.write() as session:
        if not inbox.claim(session, "loyalty.award-points", envelope.id):
            return                      # already processed: a duplicate delivery
        ...                             # the effect, in the same session

The id and the effect commit together or not at all, so a redelivered message (the relay
publishes at least once, the broker redelivers unacknowledged messages) has its effect
exactly once. See ``docs/messaging.md``, *Idempotent consumers*.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, Insert, MetaData, String, Table, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.db import UtcDateTime, utcnow
from charter.messaging.outbox import cutoff

__all__ = ["CONSUMER_MAX", "MESSAGE_ID_MAX", "Inbox", "add_inbox_table"]

CONSUMER_MAX = 80
MESSAGE_ID_MAX = 36


def add_inbox_table(metadata: MetaData) -> Table:
    """Add the ``processed_messages`` table to a consumer service's ``metadata``."""
    table = Table(
        "processed_messages",
        metadata,
        Column("consumer", String(CONSUMER_MAX), primary_key=True),
        Column("message_id", String(MESSAGE_ID_MAX), primary_key=True),
        Column("processed_at", UtcDateTime(), nullable=False),
    )
    Index("ix_processed_messages_processed_at", table.c.processed_at)
    return table


class Inbox:
    """Claims message ids for consumers, always in the caller's session."""

    def __init__(self, table: Table, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.table = table
        self.clock = clock
        # ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per dialect, built once (building a
        # statement and its cache key per message cost more than running it on SQLite).
        self._claims: dict[str, Insert] = {
            name: module.insert(table).on_conflict_do_nothing().returning(table.c.message_id)
            for name, module in (("postgresql", postgresql), ("sqlite", sqlite))
        }

    def claim(self, session: Session, consumer: str, message_id: str) -> bool:
        """Record that ``consumer`` processes ``message_id`` in the caller's transaction.

        True: first time, go on with the effect in the same session. False: this consumer
        already processed it (committed), skip it; the session stays usable either way.
        On PostgreSQL a concurrent claim of the same id waits for the first transaction
        and gets False if it committed, True if it rolled back.
        """
        if not consumer or len(consumer) > CONSUMER_MAX:
            raise ValueError(f"consumer must be 1 to {CONSUMER_MAX} characters")
        if not message_id or len(message_id) > MESSAGE_ID_MAX:
            raise ValueError(f"message id must be 1 to {MESSAGE_ID_MAX} characters")
        row = {"consumer": consumer, "message_id": message_id, "processed_at": self.clock()}
        stmt = self._claims.get(session.get_bind().dialect.name)
        if stmt is not None:  # (rowcount of an INSERT is -1 here, hence RETURNING)
            return session.execute(stmt, row).first() is not None
        try:  # any other database: a savepoint keeps the outer transaction usable
            with session.begin_nested():
                session.execute(insert(self.table).values(**row))
        except IntegrityError:
            return False
        return True

    def purge(self, session: Session, older_than: datetime | timedelta) -> int:
        """Forget ids processed before ``older_than`` (a time, or an age); returns how many.

        A message redelivered after its id was purged is processed again: keep ids longer
        than any redelivery (broker retries, DLQ replays) can come.
        """
        t = self.table
        result = session.execute(
            delete(t).where(t.c.processed_at < cutoff(older_than, self.clock()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
