"""Idempotency keys: a retried request replays its first answer instead of acting twice.

A service adds the table to its own metadata with :func:`idempotency_table` (and to its
first migration), then runs each keyed operation through :meth:`Idempotency.run`::

    outcome = idem.run(db, scope="catalog.create_reservation", key=key, request=body,
                       action=lambda session: (201, do_the_work(session)))

``run`` opens one transaction for the lookup, the business change and the stored answer,
so they commit (or roll back) together:

* same ``(scope, key)`` and the same request fingerprint → the stored status and body are
  replayed (``outcome.replayed``), nothing runs again;
* same ``(scope, key)`` with a different request → :class:`charter.problems.Unprocessable`;
* otherwise the action runs and its answer is stored.

The key is *claimed* (inserted as in progress) before the action runs. Two concurrent
first uses of one key both miss the lookup; the unique constraint on ``(scope, key)``
lets only one claim survive: on PostgreSQL the second insert waits for the first
transaction and then fails with ``IntegrityError``; the loser rolls back (its business
change included, if any), re-reads the winner's row and replays it, or answers 422
(different request) or 409 (no stored answer to replay). Only successful answers are
stored: an action that raises rolls everything back, claim included, so a retry after a
failure is evaluated afresh.

For callers that manage their own transaction, :meth:`Idempotency.lookup`,
:meth:`Idempotency.claim` / :meth:`Idempotency.complete` and :meth:`Idempotency.store`
are the pieces.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.problems import Conflict, Unprocessable

log = logging.getLogger(__name__)

TABLE_NAME = "idempotency_keys"
IN_PROGRESS = 0  # status of a claimed key whose transaction has not finished


def idempotency_table(metadata: MetaData, name: str = TABLE_NAME) -> Table:
    """The idempotency-key table, added to a service's own metadata."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("scope", String(100), nullable=False),
        Column("key", String(128), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("body", JSON, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("scope", "key", name=f"uq_{name}_scope_key"),
    )


def canonical_json(value: Any) -> str:
    """One spelling per JSON value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(request: Any) -> str:
    """sha256 (hex) of the canonical JSON of a request body (and whatever else identifies it)."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """The answer to give: freshly computed, or replayed from the first use of the key."""

    status: int
    body: Any
    replayed: bool = False


Action = Callable[[Session], tuple[int, Any]]
SessionFactory = Callable[[], AbstractContextManager[Session]]


class Idempotency:
    """Lookup, store and the full run-once protocol over one idempotency table."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def lookup(self, session: Session, scope: str, key: str, fp: str) -> Outcome | None:
        """The stored answer for ``(scope, key)``; 422 if it was stored for another request."""
        t = self.table
        row = session.execute(
            select(t.c.fingerprint, t.c.status, t.c.body).where(
                t.c.scope == scope, t.c.key == key
            )
        ).first()
        if row is None:
            return None
        if row.fingerprint != fp:
            raise Unprocessable(
                f"Idempotency-Key {key!r} was already used with a different request",
                title="Idempotency-Key reused",
            )
        if row.status == IN_PROGRESS:
            raise Conflict(
                f"a request with Idempotency-Key {key!r} is still in progress; retry later",
                title="Request in progress",
            )
        return Outcome(status=row.status, body=row.body, replayed=True)

    def claim(self, session: Session, scope: str, key: str, fp: str) -> None:
        """Insert the key as in progress, in the caller's transaction, before acting.

        A concurrent transaction claiming the same key waits on the unique index
        (PostgreSQL) and fails with ``IntegrityError`` once this one commits.
        """
        self.store(session, scope, key, fp, IN_PROGRESS, None)

    def complete(self, session: Session, scope: str, key: str, status: int, body: Any) -> None:
        """Record the answer of a claimed key (same transaction as the claim)."""
        t = self.table
        session.execute(
            update(t).where(t.c.scope == scope, t.c.key == key).values(status=status, body=body)
        )

    def store(
        self, session: Session, scope: str, key: str, fp: str, status: int, body: Any
    ) -> None:
        """Record an answer in the caller's transaction (flushed now, so a race fails here)."""
        session.execute(
            insert(self.table).values(
                scope=scope,
                key=key,
                fingerprint=fp,
                status=status,
                body=body,
                created_at=datetime.now(UTC),
            )
        )
        session.flush()

    def run(
        self,
        sessions: SessionFactory,
        *,
        scope: str,
        key: str,
        request: Any,
        action: Action,
        begin: Callable[[Session], None] | None = None,
    ) -> Outcome:
        """Run ``action`` once per ``(scope, key)``; see the module docstring.

        ``sessions`` is a unit-of-work factory such as ``Database.session``; ``begin`` runs
        first in the transaction (e.g. to take a write lock).
        """
        fp = fingerprint(request)
        try:
            with sessions() as session:
                if begin is not None:
                    begin(session)
                stored = self.lookup(session, scope, key, fp)
                if stored is not None:
                    return stored
                self.claim(session, scope, key, fp)
                status, body = action(session)
                self.complete(session, scope, key, status, body)
                return Outcome(status=status, body=body)
        except IntegrityError as exc:
            # A concurrent request with the same key (or touching the same unique row)
            # committed first: our transaction is rolled back; answer as it decided.
            with sessions() as session:
                stored = self.lookup(session, scope, key, fp)
            if stored is not None:
                log.info("idempotency race on %s/%s: replaying the winner", scope, key)
                return stored
            raise Conflict(
                "a concurrent request changed the same resource; retry the request",
                title="Concurrent request",
            ) from exc
