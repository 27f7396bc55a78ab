"""Read-only transactions on a PostgreSQL streaming-replication standby, never stale.

:class:`charter.db.Database` opens a read (``Database.read()``, what ``uow.read()`` uses) on
the replica only when the replica has replayed the primary's WAL up to the position the
primary had when the read began: ``pg_current_wal_lsn()`` on the primary, then on the
standby ``pg_last_wal_replay_lsn() >= that`` (polled for a few milliseconds). Every write
committed before the read started is therefore visible — the same guarantee a read on the
primary gives — so a cache filled right after an invalidation cannot store a row the
replica has not replayed yet, and a use case that reads what another just wrote (an
idempotency race's loser, a saga step) is correct without knowing a replica exists.

When the replica is behind beyond the wait, unreachable (then skipped for
``retry_after`` seconds) or no longer a standby, the read runs on the primary: a replica
outage never takes reads down. ``charter_db_replica_reads_total{service,database,route}``
counts where reads went; :func:`replica_checks` is the readiness check (``degraded``, never down).
See ``docs/operations.md``, *Catalog database replication*.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from charter.observability.families import process_service
from charter.observability.health import Degraded

log = logging.getLogger(__name__)

REPLICA_READS = Counter(
    "charter_db_replica_reads_total",
    "Read transactions by where they ran: replica, primary_behind (the replica had not "
    "replayed the primary's position within the wait), primary_unreachable (replica down)",
    ["service", "database", "route"],
)

CAUGHT_UP = text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)")
PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()::text")


class ReadReplica:
    """A standby's engine and the rule deciding whether a read may run on it."""

    def __init__(self, engine: Engine, *, service: str | None = None, wait: float = 0.02,
                 retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.wait = wait
        self.retry_after = retry_after
        self._clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.database = make_url(engine.url).database or "?"
        self.service = service or process_service()

    def _count(self, route: str) -> None:
        REPLICA_READS.labels(self.service, self.database, route).inc()

    def session_at(self, primary_position: str) -> Session | None:
        """A session on the replica that sees every write up to ``primary_position`` (an
        LSN), or ``None`` (counted) when the read must run on the primary."""
        if self._clock() < self._down_until:
            self._count("primary_unreachable")
            return None
        session = self._sessions()
        try:
            deadline = self._clock() + self.wait
            while not session.execute(CAUGHT_UP, {"lsn": primary_position}).scalar():
                if self._clock() >= deadline:
                    session.close()
                    self._count("primary_behind")
                    return None
                time.sleep(0.001)
        except DBAPIError as exc:
            session.close()
            with self._lock:
                self._down_until = self._clock() + self.retry_after
            log.warning("read replica of %s unreachable (%s); reads go to the primary for "
                        "%.0f s", self.database, type(exc.orig).__name__, self.retry_after)
            self._count("primary_unreachable")
            return None
        self._count("replica")
        return session

    def check(self) -> None:
        """Readiness: :class:`Degraded` (reason ``replica-unreachable`` or
        ``replica-not-standby``, e.g. promoted) when the replica cannot serve reads; they
        run on the primary meanwhile."""
        try:
            with self.engine.connect() as conn:
                standby = conn.execute(text("SELECT pg_is_in_recovery()")).scalar()
        except DBAPIError as exc:
            raise Degraded("replica-unreachable") from exc
        if not standby:
            raise Degraded("replica-not-standby")

    def dispose(self) -> None:
        """Close every pooled connection to the replica."""
        self.engine.dispose()


def primary_position(engine: Engine) -> str | None:
    """The primary's current WAL write position, or ``None`` when it cannot tell (then
    the read runs on the primary, which reports its own failure)."""
    try:
        with engine.connect() as conn:
            return conn.execute(PRIMARY_POSITION).scalar()  # type: ignore[no-any-return]
    except DBAPIError:
        return None


def replica_checks(replica: ReadReplica | None) -> dict[str, Callable[[], None]]:
    """The readiness check ``database-replica`` when a replica is configured."""
    return {} if replica is None else {"database-replica": replica.check}
