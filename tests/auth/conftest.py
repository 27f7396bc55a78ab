"""Fixtures: a migrated, seeded SQLite auth database in tmp_path and a Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import AUDIENCE, ISSUER
from flask import Flask
from flask.testing import FlaskClient

from auth.app import MIGRATIONS_DIR, create_flask_app
from auth.seed import seed
from auth.settings import Settings
from charter.db import Database
from charter.migrations import upgrade


@pytest.fixture
def settings() -> Settings:
    return Settings(issuer=ISSUER, audience=AUDIENCE, session_secret="test-session-secret")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.delenv("CHARTER_ENV", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    for name in ("DEMO_CLI_SECRET", "INTERNAL_CLIENT_SECRET", "DEMO_ALICE_PASSWORD",
                 "DEMO_ADMIN_PASSWORD", "DEMO_STAFF_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade("auth", MIGRATIONS_DIR, url)
    database = Database(url)
    seed(database)
    yield database
    database.dispose()


@pytest.fixture
def app(db: Database, settings: Settings) -> Flask:
    flask_app = create_flask_app(db, settings)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


