"""Real PostgreSQL and Redis for tests, and the skip-or-fail rule when they are missing.

On a laptop without the servers, a test that needs one is skipped with a reason (shown in
pytest's ``-ra`` summary). With ``CI=true`` an unreachable server is a failure, never a
skip. The fixtures built on this live in :mod:`tests.support.plugin`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from charter import migrations
from charter.db import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    """True when running in CI, where every real server must be reachable."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason`` on a laptop; fail with it when ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason} — CI=true requires it", pytrace=False)
    pytest.skip(reason)


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """Skip (laptop) or fail (CI) because ``what`` is unreachable."""
    skip_or_fail(f"{what} unreachable ({type(exc).__name__}: {exc})")


def _postgres_where() -> str:
    return "PostgreSQL at " + POSTGRES_ADMIN_URL.split("@")[-1]


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test PostgreSQL server."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def require_postgres() -> None:
    """Skip or fail (see :func:`unavailable`) unless the PostgreSQL server answers."""
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # connection refused, auth, …
        unavailable(_postgres_where(), exc)
    finally:
        engine.dispose()


def drop_databases(names: Iterable[str]) -> None:
    """Drop PostgreSQL databases (those that do not exist are ignored)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def fresh_postgres_database(prefix: str = "charter_test") -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth, …
        unavailable(_postgres_where(), exc)
    finally:
        admin.dispose()
    try:
        yield database_url(name)
    finally:
        drop_databases([name])


@contextmanager
def fresh_redis_database() -> Iterator[str]:
    """The test Redis database (``TEST_REDIS_URL``, db 15), flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        client.close()
        unavailable("Redis at " + REDIS_TEST_URL, exc)
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


def migrations_dir(service: str) -> Path:
    """The Alembic folder of ``service`` (``auth`` or one under ``services/``)."""
    base = ROOT / "auth" if service == "auth" else ROOT / "services" / service
    folder = base / "migrations"
    if not folder.is_dir():
        raise ValueError(f"no migrations for {service!r} at {folder}")
    return folder


def migrated_database(service: str, url: str) -> Database:
    """Bring ``url`` to ``service``'s Alembic head and return a :class:`Database` on it.

    The caller disposes it (or uses the ``migrated_db`` fixture factory, which does).
    """
    migrations.upgrade(service, migrations_dir(service), url)
    return Database(url)
