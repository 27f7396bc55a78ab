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

A service layer that works through a unit of work (:mod:`charter.unit_of_work`) never
holds a Session: its repositories expose the keys as :class:`IdempotencyKeys` (the SQL
adapter is :class:`SessionIdempotencyKeys`) and it calls :func:`run_once`, the same
protocol over ``uow.write()`` / ``uow.read()``.

Retention (docs/architecture.md, "Idempotency keys"): a key is kept for
``IDEMPOTENCY_RETENTION_DAYS`` (default 7, at least 1) after its first use. An expired key
is treated as never seen: :meth:`Idempotency.lookup` deletes it and answers ``None``, so a
request with that key runs afresh (even if its body differs). Expired rows are deleted by
:class:`Purger` — a daemon thread each service's app factory starts (every
``IDEMPOTENCY_PURGE_INTERVAL`` seconds, default 3600; 0 turns it off) — and by
``charter db purge``. Deleting expired rows is idempotent, so any number of workers may
purge at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter import config
from charter.db import Database, UtcDateTime, utcnow
from charter.problems import Conflict, Unprocessable
from charter.unit_of_work import UnitOfWork, WriteConflict

log = logging.getLogger(__name__)

TABLE_NAME = "idempotency_keys"
IN_PROGRESS = 0  # status of a claimed key whose transaction has not finished

RETENTION_VAR = "IDEMPOTENCY_RETENTION_DAYS"
PURGE_INTERVAL_VAR = "IDEMPOTENCY_PURGE_INTERVAL"
DEFAULT_RETENTION = timedelta(days=7)
MIN_RETENTION = timedelta(days=1)
DEFAULT_PURGE_INTERVAL = 3600.0

Clock = Callable[[], datetime]


def retention_from_env() -> timedelta:
    """``IDEMPOTENCY_RETENTION_DAYS`` (default 7); less than 1 day is refused.

    The floor keeps the retention above every retry and recovery window of the platform
    (see docs/architecture.md, "Idempotency keys").
    """
    raw = config.env(RETENTION_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_RETENTION
    try:
        days = float(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{RETENTION_VAR} must be a number of days") from exc
    if not math.isfinite(days) or timedelta(days=days) < MIN_RETENTION:
        raise config.ConfigError(
            f"{RETENTION_VAR} must be at least {MIN_RETENTION.days} day(s): keys must outlive "
            "every retry and recovery window"
        )
    return timedelta(days=days)


def purge_interval_from_env() -> float:
    """``IDEMPOTENCY_PURGE_INTERVAL`` seconds between purges (default 3600; 0 = never)."""
    raw = config.env(PURGE_INTERVAL_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_PURGE_INTERVAL
    try:
        value = float(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{PURGE_INTERVAL_VAR} must be a number of seconds") from exc
    if not math.isfinite(value) or value < 0:
        raise config.ConfigError(f"{PURGE_INTERVAL_VAR} must be 0 or a positive number")
    return value


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
        Column("created_at", UtcDateTime(), nullable=False),
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
    """Lookup, store and the full run-once protocol over one idempotency table.

    ``retention`` (default: :func:`retention_from_env`) is how long a key is honoured;
    ``clock`` (default: :func:`charter.db.utcnow`) says what time it is.
    """

    def __init__(self, table: Table, *, retention: timedelta | None = None,
                 clock: Clock = utcnow) -> None:
        self.table = table
        self.retention = retention if retention is not None else retention_from_env()
        self.clock = clock

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Keys first used before this instant have expired."""
        return (now or self.clock()) - self.retention

    def lookup(self, session: Session, scope: str, key: str, fp: str) -> Outcome | None:
        """The stored answer for ``(scope, key)``; 422 if it was stored for another request.

        An expired key is deleted here (in the caller's transaction) and treated as new.
        """
        t = self.table
        row = session.execute(
            select(t.c.id, t.c.fingerprint, t.c.status, t.c.body, t.c.created_at).where(
                t.c.scope == scope, t.c.key == key
            )
        ).first()
        if row is None:
            return None
        if row.created_at < self.cutoff():
            session.execute(delete(t).where(t.c.id == row.id))
            log.info("idempotency key %s/%s expired: treated as new", scope, key)
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
                created_at=self.clock(),
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

    def purge(self, session: Session, now: datetime | None = None) -> int:
        """Delete every expired key (in the caller's transaction); how many were deleted."""
        t = self.table
        result = session.execute(delete(t).where(t.c.created_at < self.cutoff(now)))
        return int(result.rowcount)  # type: ignore[attr-defined]


class Purger:
    """Deletes expired idempotency keys now and then, in a daemon thread.

    Each service with an idempotency table starts one from its app factory
    (:func:`start_purger`). With several workers each runs its own: deleting expired rows
    is idempotent, so they never conflict (at worst one finds nothing left to delete).
    """

    def __init__(self, db: Database, idempotency: Idempotency, *, interval: float,
                 name: str = "idempotency") -> None:
        self.db = db
        self.idempotency = idempotency
        self.interval = interval
        self.name = name
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Purge now; how many keys were deleted."""
        with self.db.write() as session:
            deleted = self.idempotency.purge(session)
        if deleted:
            log.info("%s: purged %d expired idempotency keys", self.name, deleted)
        return deleted

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # the database may be down: try again next time
                log.exception("%s: idempotency purge failed", self.name)
            if self.stopping.wait(self.interval):
                return

    def start(self) -> Purger:
        """Purge now and then every ``interval`` seconds (0: never) in a daemon thread."""
        if self.interval > 0 and self.thread is None:
            self.thread = threading.Thread(target=self._loop, name=f"{self.name}-purge",
                                           daemon=True)
            self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (waits for a purge under way to finish)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)


def start_purger(db: Database, table: Table, *, name: str, interval: float | None = None,
                 retention: timedelta | None = None, clock: Clock = utcnow) -> Purger:
    """Start the scheduled purge of ``table`` (interval default from the environment)."""
    interval = purge_interval_from_env() if interval is None else interval
    idempotency = Idempotency(table, retention=retention, clock=clock)
    return Purger(db, idempotency, interval=interval, name=name).start()


def purge_database(url: str, *, retention: timedelta | None = None,
                   now: datetime | None = None, table_name: str = TABLE_NAME) -> int | None:
    """Purge expired keys in the database at ``url``; ``None`` if it has no such table."""
    parsed = make_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if path not in (None, "", ":memory:") and not Path(str(path)).exists():
        return None  # a SQLite file never created: nothing to purge (and none created)
    db = Database(url)
    try:
        if not inspect(db.engine).has_table(table_name):
            return None
        idempotency = Idempotency(idempotency_table(MetaData(), table_name),
                                  retention=retention)
        with db.write() as session:
            return idempotency.purge(session, now)
    finally:
        db.dispose()


# The same protocol for service layers that work through a unit of work ----------------
class IdempotencyKeys(Protocol):
    """The port: the idempotency keys of one unit of work (no Session, no ORM).

    ``lookup`` raises :class:`charter.problems.Unprocessable` (key used for another
    request) or :class:`charter.problems.Conflict` (still in progress); ``claim`` raises
    :class:`charter.unit_of_work.WriteConflict` when a concurrent request claimed the key.
    """

    def lookup(self, scope: str, key: str, fp: str) -> Outcome | None:
        """The stored answer for ``(scope, key)`` (see :meth:`Idempotency.lookup`)."""
        ...

    def claim(self, scope: str, key: str, fp: str) -> None:
        """Insert the key as in progress before acting."""
        ...

    def complete(self, scope: str, key: str, status: int, body: Any) -> None:
        """Record the answer of the claimed key."""
        ...


class HasIdempotencyKeys(Protocol):
    """Repositories that carry the unit of work's idempotency keys."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The keys, bound to the same transaction as the repositories."""
        ...


class SessionIdempotencyKeys:
    """:class:`IdempotencyKeys` over :class:`Idempotency` and one Session (the SQL adapter).

    A unique-constraint race on the claim becomes :class:`WriteConflict`.
    """

    def __init__(self, idempotency: Idempotency, session: Session) -> None:
        self._idempotency = idempotency
        self._session = session

    def lookup(self, scope: str, key: str, fp: str) -> Outcome | None:
        return self._idempotency.lookup(self._session, scope, key, fp)

    def claim(self, scope: str, key: str, fp: str) -> None:
        try:
            self._idempotency.claim(self._session, scope, key, fp)
        except IntegrityError as exc:
            raise WriteConflict(f"idempotency key {scope}/{key} claimed concurrently") from exc

    def complete(self, scope: str, key: str, status: int, body: Any) -> None:
        self._idempotency.complete(self._session, scope, key, status, body)


K = TypeVar("K", bound=HasIdempotencyKeys)


def run_once(uow: UnitOfWork[K], *, scope: str, key: str, request: Any,
             action: Callable[[K], tuple[int, Any]]) -> Outcome:
    """Run ``action`` once per ``(scope, key)`` in one ``uow.write()`` (see the module docstring).

    The same protocol as :meth:`Idempotency.run`: the stored answer is replayed; otherwise
    the key is claimed, ``action(repositories)`` runs and its ``(status, JSON body)`` is
    stored, all in one transaction. When the transaction loses a race
    (:class:`WriteConflict`: the same key, or a row the action writes) it is rolled back
    and the winner's answer replayed, or 409 if there is none to replay.
    """
    fp = fingerprint(request)
    try:
        with uow.write() as repos:
            stored = repos.idempotency.lookup(scope, key, fp)
            if stored is not None:
                return stored
            repos.idempotency.claim(scope, key, fp)
            status, body = action(repos)
            repos.idempotency.complete(scope, key, status, body)
            return Outcome(status=status, body=body)
    except WriteConflict as exc:
        with uow.read() as repos:
            stored = repos.idempotency.lookup(scope, key, fp)
        if stored is not None:
            log.info("idempotency race on %s/%s: replaying the winner", scope, key)
            return stored
        raise Conflict(
            "a concurrent request changed the same resource; retry the request",
            title="Concurrent request",
        ) from exc
