"""SQLAlchemy 2 engines and sessions, one database per service.

The ORM-free pieces live apart so a service layer can use them without loading
SQLAlchemy: the clock (:mod:`charter.clock`, re-exported here), JSON snapshots of domain
objects (:mod:`charter.snapshots`) and the unit-of-work port (:mod:`charter.unit_of_work`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import DateTime, Dialect, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from charter.clock import as_utc, rfc3339, utcnow
from charter.observability import tracing
from charter.read_replica import ReadReplica, primary_position
from charter.unit_of_work import WriteConflict

__all__ = [  # the time helpers live in charter.clock (no ORM) and are re-exported here
    "NAMING_CONVENTION", "NAMING_CONVENTION_FK_REFERRED", "Base", "Database", "SqlUnitOfWork",
    "UtcDateTime", "as_utc", "begin_write", "ensure_database", "make_engine", "rfc3339",
    "service_metadata", "utcnow", "write_conflicts",
]

NAMING_CONVENTION: Mapping[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint naming of the declarative stores (catalog, loyalty, notifications).

Unique constraints are named after all their columns, foreign keys after the local column.
"""

NAMING_CONVENTION_FK_REFERRED: Mapping[str, str] = {
    **NAMING_CONVENTION,
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}
"""Constraint naming of the Core-table stores (cart, orders, payments, exchange).

Unique constraints are named after their first column, foreign keys also after the
referred table. The names are baked into those services' migrations, so the two
conventions stay distinct.
"""


def service_metadata(naming_convention: Mapping[str, str] = NAMING_CONVENTION) -> MetaData:
    """A fresh ``MetaData`` for one service's tables, with the given constraint naming."""
    return MetaData(naming_convention=dict(naming_convention))


class Base(DeclarativeBase):
    """Declarative base; each service defines its own subclass so metadata stays separate."""


def make_engine(url: str, *, connect_timeout: int | None = None) -> Engine:
    """An engine with sane defaults for SQLite (WAL, foreign keys) and PostgreSQL
    (``connect_timeout`` seconds to connect, libpq's default when ``None``)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the process being killed (the WAL is in the
            # OS's hands); only an OS crash or power loss can lose the last commits. The
            # embedded mode's trade-off (PostgreSQL in production); FULL fsyncs every
            # commit, which serialised writers pay for in latency.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        tracing.instrument_engine(engine)  # SQL spans, only when tracing is configured
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    connect_args = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                           connect_args=connect_args)
    tracing.instrument_engine(engine)
    return engine


class UtcDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` column that always hands back aware UTC datetimes.

    SQLite has no time zones and returns naive values; PostgreSQL returns them in the
    session's zone. Both come back as UTC here, and naive values are refused on the way in
    so local times can never be stored by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC datetimes (charter.db.utcnow)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def begin_write(session: Session) -> None:
    """Start a write transaction: on SQLite take the write lock now (``BEGIN IMMEDIATE``).

    A deferred SQLite transaction that reads and then writes fails with ``SQLITE_BUSY``
    (busy timeout not honoured) when another writer committed in between; taking the lock
    first serialises writers and makes every read in the transaction current. PostgreSQL
    needs nothing here (row locks and constraints do the work).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


class Database:
    """A service's database: engine plus a session factory with unit-of-work semantics.

    ``session()`` is a read (or deferred) transaction; ``write()`` is the unit of work of
    a use case that changes state: one transaction, the write lock taken first on SQLite,
    committed on success and rolled back on any exception. ``read()`` is a read-only use
    case's transaction: on the ``read_url`` streaming-replication standby (PostgreSQL) when
    it has replayed every write committed before the read began, else on the primary
    (:mod:`charter.read_replica`; ``service`` labels its metrics, default
    ``CHARTER_SERVICE``); without ``read_url`` it is ``session()``.
    """

    def __init__(self, url: str, *, read_url: str | None = None,
                 service: str | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.replica: ReadReplica | None = None
        if read_url:
            if self.engine.dialect.name != "postgresql" or not read_url.startswith("postgresql"):
                raise ValueError("a read replica needs PostgreSQL for both URLs")
            self.replica = ReadReplica(make_engine(read_url, connect_timeout=2),
                                       service=service)
        # SQLite has one writer at a time; its busy handler makes a waiting writer sleep
        # in growing steps (up to 100 ms), so threads of one process queue on this lock
        # instead (first come, first served); other processes still meet the busy handler.
        self._writer = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on any exception."""
        with _transaction(self._sessions()) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only use case's transaction: on the replica when it is caught up with
        the primary's position at this call (never staler than the primary), else on the
        primary."""
        session: Session | None = None
        if self.replica is not None:
            position = primary_position(self.engine)
            if position is not None:
                session = self.replica.session_at(position)
        with _transaction(session if session is not None else self._sessions()) as active:
            yield active

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (see :func:`begin_write`): commit on success, else roll back."""
        if self._writer is None:
            with self.session() as session:
                begin_write(session)
                yield session
            return
        with self._writer, self.session() as session:
            begin_write(session)
            yield session

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.replica is not None:
            self.replica.dispose()


@contextmanager
def _transaction(session: Session) -> Iterator[Session]:
    """``session`` as one transaction: commit on success, roll back on any exception."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def write_conflicts(detail: str = "the change conflicts with existing data") -> Iterator[None]:
    """A constraint refusing a write (``IntegrityError``: a concurrent writer won) as the
    port's :class:`charter.unit_of_work.WriteConflict`, so no ORM error leaves a store."""
    try:
        yield
    except IntegrityError as exc:
        raise WriteConflict(detail) from exc


R = TypeVar("R")


class SqlUnitOfWork(Generic[R]):
    """:class:`charter.unit_of_work.UnitOfWork` on a :class:`Database`.

    ``repositories(session)`` builds what a use case works with (a repository, or an object
    holding several) bound to the transaction's session.
    """

    def __init__(self, db: Database, repositories: Callable[[Session], R]) -> None:
        self.db = db
        self._repositories = repositories

    @contextmanager
    def read(self) -> Iterator[R]:
        """A read transaction's repositories (on the replica when allowed, see
        :meth:`Database.read`)."""
        with self.db.read() as session:
            yield self._repositories(session)

    @contextmanager
    def write(self) -> Iterator[R]:
        """A write transaction's repositories (see :meth:`Database.write`)."""
        with self.db.write() as session:
            yield self._repositories(session)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet.

    Returns True when it was created. SQLite files are created on first connect, so
    nothing is done for them.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url if not url.startswith("postgresql://") else
                      "postgresql+psycopg://" + url[len("postgresql://"):])
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
            ).scalar()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
            return True
    finally:
        admin.dispose()
