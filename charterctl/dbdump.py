"""Copying one database to a file and back: SQLite's online backup API, ``pg_dump`` and
``pg_restore``.

PostgreSQL connection settings reach the child processes as libpq environment variables
(``PGHOST``, ``PGPASSWORD``…), never on the command line, so a password shows up neither in
``ps`` nor in a log of the command. Used by :mod:`charterctl.backup`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError

from charter.db import ensure_database

PG_BIN_ROOT = Path("/usr/lib/postgresql")
EVENTS_TABLE = "events"  # charter.eventstore.tables.EVENTS


class DumpError(Exception):
    """A copy or a restore failed (the message says which database and why)."""


@dataclass(frozen=True)
class Facts:
    """What the copy holds, read in the same snapshot as the copy itself."""

    schema_revision: str | None
    last_event_position: int | None  # None: the database has no event store


def kind_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` (:class:`DumpError` for anything else)."""
    backend = make_url(url).get_backend_name()
    if backend in ("sqlite", "postgresql"):
        return backend
    raise DumpError(f"unsupported database kind {backend!r}")


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///…`` URL (:class:`DumpError` for in-memory databases)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise DumpError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def safe_url(url: str) -> str:
    """The URL with its password masked, fit for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str, **options: str) -> Engine:
    """A plain engine (``postgresql://`` means psycopg 3, as in :mod:`charter.db`)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, **options)


# -- facts ---------------------------------------------------------------------------------


def _facts(conn: sqlite3.Connection | Connection, service: str) -> Facts:
    def scalar(sql: str) -> object:
        if isinstance(conn, sqlite3.Connection):
            row = conn.execute(sql).fetchone()
            return row[0] if row else None
        return conn.execute(text(sql)).scalar()

    if isinstance(conn, sqlite3.Connection):
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    else:
        tables = set(inspect(conn).get_table_names())
    version_table = f"alembic_version_{service}"
    revision = scalar(f"SELECT version_num FROM {version_table}") \
        if version_table in tables else None
    position = scalar(f"SELECT COALESCE(MAX(position), 0) FROM {EVENTS_TABLE}") \
        if EVENTS_TABLE in tables else None
    return Facts(None if revision is None else str(revision),
                 None if position is None else int(str(position)))


# -- SQLite --------------------------------------------------------------------------------


def backup_sqlite(url: str, service: str, target: Path) -> Facts:
    """Copy a live SQLite database to ``target`` with the online backup API (consistent
    even while services write to it)."""
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise DumpError(f"no database file {source_path}")
    source = sqlite3.connect(source_path, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            facts = _facts(copy, service)
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise DumpError(f"{service}: SQLite backup of {source_path} failed: {exc}") from exc
    finally:
        source.close()
    return facts


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_sqlite(copy: Path, url: str) -> None:
    """Replace the database file of ``url`` with ``copy`` atomically: write a temporary
    file next to it, fsync, drop the old ``-wal``/``-shm`` (they belong to the old file),
    rename over it."""
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restore-{os.getpid()}")
    try:
        with copy.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                target.with_name(target.name + suffix).unlink()
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- PostgreSQL ----------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """The path of ``pg_dump``/``pg_restore``: on ``PATH``, else the newest under
    ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(PG_BIN_ROOT.glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if candidates:
        return str(candidates[-1])
    raise DumpError(f"{name} not found on PATH nor under {PG_BIN_ROOT}/*/bin")


def libpq_env(url: str) -> dict[str, str]:
    """The child environment that points libpq at ``url`` (password in ``PGPASSWORD``)."""
    parsed = make_url(url)
    env = dict(os.environ)
    for var, value in (("PGHOST", parsed.host), ("PGPORT", parsed.port),
                       ("PGUSER", parsed.username), ("PGPASSWORD", parsed.password),
                       ("PGDATABASE", parsed.database)):
        if value is not None:
            env[var] = str(value)
    libpq_query = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                   "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
                   "connect_timeout": "PGCONNECT_TIMEOUT"}
    for key, var in libpq_query.items():
        option = parsed.query.get(key)
        if isinstance(option, str):
            env[var] = option
    return env


def _run(argv: list[str], url: str, what: str) -> None:
    done = subprocess.run(argv, env=libpq_env(url), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise DumpError(f"{what} failed ({Path(argv[0]).name} exit {done.returncode}): "
                        f"{done.stderr.strip()[-2000:]}")


@contextlib.contextmanager
def _exported_snapshot(url: str) -> Iterator[tuple[str, Connection]]:
    """A repeatable-read transaction held open, and its exported snapshot id."""
    engine = _engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn:
            snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar())
            yield snapshot, conn
            conn.rollback()
    finally:
        engine.dispose()


def backup_postgres(url: str, service: str, target: Path) -> Facts:
    """``pg_dump --format=custom`` of the service's database into ``target``; the facts
    are read in the very snapshot the dump copies (``pg_export_snapshot``)."""
    try:
        with _exported_snapshot(url) as (snapshot, conn):
            facts = _facts(conn, service)
            _run([pg_tool("pg_dump"), "--format=custom", "--no-password",
                  f"--snapshot={snapshot}", f"--file={target}"], url,
                 f"{service}: pg_dump of {safe_url(url)}")
    except DumpError:
        raise
    except Exception as exc:  # connection refused, authentication, …
        raise DumpError(f"{service}: cannot read {safe_url(url)}: "
                        f"{type(exc).__name__}: {exc}") from exc
    return facts


def other_sessions(url: str) -> int:
    """How many other sessions are connected to the database of ``url`` (0 when the
    database does not exist yet)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
                or 0)
    except OperationalError as exc:
        if "does not exist" in str(exc):
            return 0
        raise
    finally:
        engine.dispose()


def restore_postgres(dump: Path, url: str) -> None:
    """``pg_restore --clean --if-exists --single-transaction`` into the database of
    ``url``: every object of the dump is dropped and recreated in one transaction (a
    failure leaves the database as it was). A database that does not exist yet (a new
    server) is created first."""
    try:
        ensure_database(url)
    except Exception as exc:  # connection refused, no CREATEDB right, …
        raise DumpError(f"cannot create or reach {safe_url(url)}: "
                        f"{type(exc).__name__}: {exc}") from exc
    database = make_url(url).database or ""
    _run([pg_tool("pg_restore"), "--clean", "--if-exists", "--single-transaction",
          "--no-password", "--exit-on-error", f"--dbname={database}", str(dump)], url,
         f"pg_restore into {safe_url(url)}")
