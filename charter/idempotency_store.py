"""The SQL side of idempotency keys: the table, sessions, the adapter and the purge.

The protocol is described in :mod:`charter.idempotency` (the port, which loads no ORM):
:class:`Idempotency` runs it over SQLAlchemy Sessions, :class:`SessionIdempotencyKeys`
is the :class:`~charter.idempotency.IdempotencyKeys` adapter a repository hands out, and
:class:`Purger` / :func:`purge_database` delete expired keys.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.db import Database, SqlUnitOfWork, UtcDateTime, utcnow, write_conflicts
from charter.idempotency import (
    IN_PROGRESS,
    TABLE_NAME,
    Clock,
    IdempotencyKeys,
    Outcome,
    purge_interval_from_env,
    retention_from_env,
    run_once,
)
from charter.problems import Conflict, Unprocessable
from charter.unit_of_work import WriteConflict

log = logging.getLogger("charter.idempotency")


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
        # The per-request statements, built once with bound parameters (building a
        # statement and its cache key per call costs more than running it on SQLite).
        t = table
        self._lookup = select(t.c.id, t.c.fingerprint, t.c.status, t.c.body, t.c.created_at
                              ).where(t.c.scope == bindparam("b_scope"),
                                      t.c.key == bindparam("b_key"))
        self._complete = update(t).where(t.c.scope == bindparam("b_scope"),
                                         t.c.key == bindparam("b_key"))
        self._insert = insert(t)

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Keys first used before this instant have expired."""
        return (now or self.clock()) - self.retention

    def lookup(self, session: Session, scope: str, key: str, fp: str) -> Outcome | None:
        """The stored answer for ``(scope, key)``; 422 if it was stored for another request.

        An expired key is deleted here (in the caller's transaction) and treated as new.
        """
        t = self.table
        row = session.execute(self._lookup, {"b_scope": scope, "b_key": key}).first()
        if row is None:
            return None
        if row.created_at < self.cutoff():
            session.execute(delete(t).where(t.c.id == row.id))
            log.info("idempotency key %s/%s expired: treated as new", scope, key)
            return None
        if row.fingerprint != fp:
            raise Unprocessable(
                f"Idempotency-Key {key!r} was already used with a different request",
                kind="idempotency-key-reused",
            )
        if row.status == IN_PROGRESS:
            raise Conflict(
                f"a request with Idempotency-Key {key!r} is still in progress; retry later",
                kind="request-in-progress",
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
        session.execute(self._complete, {"b_scope": scope, "b_key": key,
                                         "status": status, "body": body})

    def store(
        self, session: Session, scope: str, key: str, fp: str, status: int, body: Any
    ) -> None:
        """Record an answer in the caller's transaction (flushed now, so a race fails here)."""
        session.execute(self._insert, {"scope": scope, "key": key, "fingerprint": fp,
                                       "status": status, "body": body,
                                       "created_at": self.clock()})
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
        """Run ``action(session)`` once per ``(scope, key)`` for a caller that works with
        Sessions rather than a unit of work; the protocol is :func:`run_once`'s (the one
        implementation), on transactions from ``sessions`` (e.g. ``Database.session``)
        with ``begin`` run first in each (e.g. to take a write lock).
        """
        uow = _SessionUnitOfWork(self, sessions, begin)
        return run_once(uow, scope=scope, key=key, request=request,
                        action=lambda repo: action(repo.session))

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




class KeyedSqlRepository:
    """Base of a service's SQL repository whose unit of work carries idempotency keys.

    A subclass names its key table (``keys_table``); ``idempotency`` (retention and clock)
    defaults to one built from the environment, and :func:`keyed_unit_of_work` builds it
    once for every unit of work.
    """

    keys_table: ClassVar[Table]

    def __init__(self, session: Session, idempotency: Idempotency | None = None) -> None:
        self.session = session
        self._idempotency = idempotency

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The idempotency keys, in this repository's transaction."""
        if self._idempotency is None:
            self._idempotency = Idempotency(self.keys_table)
        return SessionIdempotencyKeys(self._idempotency, self.session)


class _SessionUnitOfWork:
    """:meth:`Idempotency.run`'s unit of work: transactions from a session factory, each
    handing out a :class:`KeyedSqlRepository`; a constraint violation is a
    :class:`~charter.unit_of_work.WriteConflict`, as :func:`run_once` expects."""

    def __init__(self, idempotency: Idempotency, sessions: SessionFactory,
                 begin: Callable[[Session], None] | None) -> None:
        self._idempotency = idempotency
        self._sessions = sessions
        self._begin = begin

    @contextmanager
    def read(self) -> Iterator[KeyedSqlRepository]:
        with write_conflicts(), self._sessions() as session:
            yield KeyedSqlRepository(session, self._idempotency)

    @contextmanager
    def write(self) -> Iterator[KeyedSqlRepository]:
        with write_conflicts(), self._sessions() as session:
            if self._begin is not None:
                self._begin(session)
            yield KeyedSqlRepository(session, self._idempotency)


KR = TypeVar("KR", bound=KeyedSqlRepository)


def keyed_unit_of_work(db: Database, repository: type[KR], *,
                       clock: Clock = utcnow) -> SqlUnitOfWork[KR]:
    """``SqlUnitOfWork(db, repository)`` sharing one :class:`Idempotency` (retention read
    and checked once, keys timed by ``clock``)."""
    keys = Idempotency(repository.keys_table, clock=clock)
    return SqlUnitOfWork(db, lambda session: repository(session, keys))
