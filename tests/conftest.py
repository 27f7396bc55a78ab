"""Shared fixtures: real PostgreSQL and Redis servers, and the skip-or-fail rule.

On a laptop without the servers, tests that need them are skipped with a reason (shown
in pytest's summary). With ``CI=true`` an unreachable server is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# The suite runs in development mode (random development secrets, SQLite defaults). Set at
# import time so session fixtures and the servers tests start inherit it; tests of
# production behaviour set CHARTER_ENV=production themselves (monkeypatch).
os.environ["CHARTER_ENV"] = "development"
# Fixed development credentials the tests log in with (in development mode an unset one
# would be random); every one of them is in charter.config.KNOWN_DEV_SECRETS.
DEV_TEST_SECRETS = {
    "DEMO_ALICE_PASSWORD": "alice-password-1",
    "DEMO_STAFF_PASSWORD": "staff-password-1",
    "DEMO_ADMIN_PASSWORD": "admin-password-1",
    "DEMO_CLI_SECRET": "demo-cli-secret",
}
os.environ.update(DEV_TEST_SECRETS)


def in_ci() -> bool:
    """True when running in CI, where every real server must be reachable."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, exc: BaseException) -> None:
    """Skip (laptop) or fail (CI) because ``what`` is unreachable."""
    reason = f"{what} unreachable ({type(exc).__name__}: {exc})"
    if in_ci():
        pytest.fail(f"{reason} — CI=true requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_var_dir(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Development mode, with every test's files out of the developer's ``var/``."""
    if "CHARTER_VAR_DIR" not in os.environ:
        monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path_factory.mktemp("var")))
    monkeypatch.setenv("CHARTER_ENV", "development")
    for name, value in DEV_TEST_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"charter_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth, …
        admin.dispose()
        unavailable("PostgreSQL at " + POSTGRES_ADMIN_URL.split("@")[-1], exc)
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A reachable Redis database (db 15), flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        unavailable("Redis at " + REDIS_TEST_URL, exc)
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()
