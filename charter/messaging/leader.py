"""The leader lock: what must run once per service (the outbox relay, the consumers) runs
in the one process holding it, whatever the number of worker processes.

* PostgreSQL: a session-level ``pg_try_advisory_lock`` on a dedicated connection. The
  server releases it when the connection ends, so a killed process (or host, detected by
  TCP keepalives) gives the lock up.
* Anything else (SQLite files, one host): ``flock`` on ``<var_dir>/locks/<name>.lock``; the
  kernel releases it when the process dies, ``kill -9`` included.

Take the lock after forking workers, never before (a forked child would share the flock
and the PostgreSQL connection). See ``docs/messaging.md``, *Once per service*.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["LeaderLock", "advisory_key", "lead"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

_HOLDS_SQL = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
    " AND classid::bigint = :hi AND objid::bigint = :lo)"
)


def advisory_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory-lock key of ``name`` (BLAKE2b, stable)."""
    digest = hashlib.blake2b(f"charter-leader:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock:
    """A non-blocking, process-wide lock named for what it protects (``"orders-messaging"``).

    ``database_url`` picks the mechanism: PostgreSQL → advisory lock on that database;
    anything else → a lock file under ``var_dir``. Thread-safe.
    """

    def __init__(self, name: str, database_url: str, *, var_dir: Path) -> None:
        if not _NAME.match(name):
            raise ValueError("lock name: letters, digits, '.', '_', '-' (at most 100)")
        self.name = name
        self.url = database_url
        self.path = Path(var_dir) / "locks" / f"{name}.lock"
        self.key = advisory_key(name)
        self._postgres = self._is_postgres(database_url)
        self._mutex = threading.Lock()
        self._conn: Connection | None = None
        self._engine: Engine | None = None
        self._fd: int | None = None

    @staticmethod
    def _is_postgres(url: str) -> bool:
        try:
            return make_url(url).get_backend_name() == "postgresql"
        except Exception:
            return False

    @property
    def mechanism(self) -> str:
        """``"postgres-advisory"`` or ``"flock"``."""
        return "postgres-advisory" if self._postgres else "flock"

    def try_acquire(self) -> bool:
        """Take the lock if free (never waits); True if this object holds it now.

        Raises when PostgreSQL cannot be reached (the caller retries later).
        """
        with self._mutex:
            if self._postgres:
                return self._pg_acquire()
            return self._flock_acquire()

    def holds(self) -> bool:
        """Whether this object still holds the lock (its connection alive, its file in place)."""
        with self._mutex:
            if self._postgres:
                return self._pg_holds()
            return self._flock_holds()

    def release(self) -> None:
        """Give the lock up (nothing happens when not held)."""
        with self._mutex:
            if self._postgres:
                self._pg_close(unlock=True)
            else:
                self._flock_close()

    def __repr__(self) -> str:
        return f"LeaderLock({self.name!r}, {self.mechanism})"

    # PostgreSQL: a session-level advisory lock on a dedicated autocommit connection.

    def _pg_acquire(self) -> bool:
        if self._conn is not None and self._pg_holds():
            return True
        self._pg_close(unlock=False)
        url = make_url(self.url)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {
            "connect_timeout": 5, "application_name": f"charter-leader:{self.name}"[:63],
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                               connect_args=connect_args)
        try:
            conn = engine.connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": self.key}).scalar())
        except Exception:
            engine.dispose()
            raise
        if not got:
            conn.close()
            engine.dispose()
            return False
        self._engine, self._conn = engine, conn
        return True

    def _pg_holds(self) -> bool:
        if self._conn is None:
            return False
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        try:
            held = bool(self._conn.execute(
                _HOLDS_SQL, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).scalar())
        except Exception as exc:  # connection gone: the server released the lock
            log.warning("leader lock connection lost", extra={
                "lock": self.name, "error": type(exc).__name__})
            held = False
        if not held:
            self._pg_close(unlock=False)
        return held

    def _pg_close(self, *, unlock: bool) -> None:
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing the connection releases it anyway
                if unlock:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            with contextlib.suppress(Exception):
                conn.close()
        if engine is not None:
            engine.dispose()

    # Anything else: flock on a file (released by the kernel when the process dies).

    def _flock_acquire(self) -> bool:
        if self._fd is not None and self._flock_holds():
            return True
        self._flock_close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if not self._flock_holds():  # the file was replaced between open and flock
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    def _flock_holds(self) -> bool:
        if self._fd is None:
            return False
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:  # the lock file was removed: another process could lock a new one
            same = False
        if not same:
            self._flock_close()
        return same

    def _flock_close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def lead(lock: LeaderLock, stop: threading.Event, work: Callable[[threading.Event], None],
         *, retry: float = 1.0, check: float = 1.0) -> None:
    """Run ``work(leading)`` in a thread while ``lock`` is ours, until ``stop`` is set.

    Tries the lock every ``retry`` seconds; once held, checks it every ``check`` seconds.
    When ``stop`` is set or the lock is lost, ``leading`` is set and ``work`` must return;
    the lock is released after it did (``work`` must not block forever). If ``work``
    returns or raises by itself, the lock is released and taken again later.
    """
    while not stop.is_set():
        try:
            acquired = lock.try_acquire()
        except Exception as exc:
            log.warning("leader lock unavailable", extra={
                "lock": lock.name, "error": type(exc).__name__})
            acquired = False
        if not acquired:
            stop.wait(retry)
            continue
        log.info("leading", extra={"lock": lock.name, "mechanism": lock.mechanism})
        leading = threading.Event()
        thread = threading.Thread(target=_guarded, args=(work, leading, lock.name),
                                  name=f"leader-{lock.name}", daemon=True)
        thread.start()
        try:
            while not stop.wait(check):
                if not thread.is_alive():
                    break
                if not lock.holds():
                    log.warning("leader lock lost", extra={"lock": lock.name})
                    break
        finally:
            leading.set()
            thread.join()
            lock.release()
        if not stop.is_set():
            stop.wait(retry)


def _guarded(work: Callable[[threading.Event], None], leading: threading.Event,
             name: str) -> None:
    try:
        work(leading)
    except Exception:
        log.exception("leader work failed", extra={"lock": name})
