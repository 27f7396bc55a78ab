"""The test-support plugin: the fixtures and helpers every service's tests share.

Registered once in ``tests/conftest.py`` (``pytest_plugins = ["tests.support.plugin"]``),
so its fixtures are visible in every test folder; a folder's own ``conftest.py`` may
override one (closest definition wins). See ``docs/testing.md``.

Fixtures: ``postgres_url`` (a database per test, created and dropped), ``redis_url``,
``any_database_url`` (the test runs on a SQLite file and on a fresh PostgreSQL database),
``migrated_db`` (factory: a migrated :class:`~charter.db.Database`, disposed at teardown),
``validate_responses`` (responses checked against the spec), ``client`` (the test client of
the folder's own ``app`` fixture),
``tokens`` (a :class:`~charter.testing.TokenFactory` for the session), ``token_matrix``,
``stub_server`` (factory: :class:`StubServer`, closed at teardown), ``asgi_server``
(factory: an ASGI app under uvicorn in a thread, stopped at teardown).

Helpers re-exported so a test module needs one import line: :func:`assert_problem`,
:func:`run_threads`, :func:`wait_until`, :func:`migrated_database`, :func:`each_operation`,
:func:`free_port`, :func:`bearer`, :class:`StubServer`, :class:`Seen`, :class:`TokenMatrix`,
:class:`HeaderRecorder`, :class:`InMemoryUnitOfWork`, :func:`assert_migrations_match_models`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from charter.db import Database
from charter.testing import TokenFactory
from tests.support.auth_headers import bearer
from tests.support.databases import (
    fresh_postgres_database,
    fresh_redis_database,
    in_ci,
    migrated_database,
    unavailable,
)
from tests.support.fakes import InMemoryUnitOfWork
from tests.support.polling import wait_until
from tests.support.problems import PROBLEM, assert_problem
from tests.support.races import run_threads
from tests.support.recorder import HeaderRecorder
from tests.support.schema import assert_migrations_match_models
from tests.support.servers import ThreadServer, free_port, serve
from tests.support.stub_server import Responder, Seen, StubServer
from tests.support.token_matrix import TokenMatrix, each_operation

__all__ = [
    "PROBLEM", "HeaderRecorder", "InMemoryUnitOfWork", "Seen", "StubServer", "ThreadServer",
    "TokenMatrix", "assert_migrations_match_models", "assert_problem", "bearer",
    "each_operation", "free_port", "in_ci", "migrated_database", "run_threads", "serve",
    "unavailable", "wait_until",
]

_SERVER_MARKS = {"postgres_url": "postgres", "redis_url": "redis"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests using a real-server fixture (``-m "not postgres"`` deselects them)."""
    for item in items:
        for fixture, mark in _SERVER_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Skipped with the reason in the summary when the server is unreachable; a failure
    instead when ``CI=true``.
    """
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A reachable Redis database (db 15), flushed before and after (skip/fail as above)."""
    with fresh_redis_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a SQLite file, then a fresh PostgreSQL one.

    A test using it runs twice (ids ``sqlite`` and ``postgres``); the PostgreSQL run has
    the ``postgres`` mark and follows the skip-or-fail rule of ``postgres_url``.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def migrated_db() -> Iterator[Callable[[str, str], Database]]:
    """``migrated_db(service, url)``: :func:`migrated_database`, disposed at teardown."""
    opened: list[Database] = []

    def make(service: str, url: str) -> Database:
        db = migrated_database(service, url)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.dispose()


@pytest.fixture
def validate_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response of a Charter app is also checked against its spec (a drift is a 500)."""
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """The test client of the folder's ``app`` fixture (a Connexion app), closed after."""
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    """Mints access tokens (and the bad-token matrix) with a key ``tokens.verifier()`` trusts."""
    return TokenFactory()


@pytest.fixture
def token_matrix(tokens: TokenFactory) -> TokenMatrix:
    """The spec-driven token matrix bound to ``tokens`` (see :mod:`tests.support.token_matrix`)."""
    return TokenMatrix(tokens)


@pytest.fixture
def stub_server() -> Iterator[Callable[..., StubServer]]:
    """``stub_server(responder, delay=0.0)``: a real HTTP stub, closed at teardown."""
    started: list[StubServer] = []

    def make(responder: Responder, **options: Any) -> StubServer:
        stub = StubServer(responder, **options)
        started.append(stub)
        return stub

    yield make
    for stub in started:
        stub.close()


@pytest.fixture
def asgi_server() -> Iterator[Callable[..., ThreadServer]]:
    """``asgi_server(app, **uvicorn_options)``: served on a free port, stopped at teardown."""
    started: list[ThreadServer] = []

    def make(app: Any, **options: Any) -> ThreadServer:
        server = serve(app, **options)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
