"""Fixtures: a migrated, seeded SQLite auth database in tmp_path and a Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import AUDIENCE, ISSUER, RESOURCE_SERVER
from flask import Flask
from flask.testing import FlaskClient

from auth.app import MIGRATIONS_DIR, create_flask_app
from auth.seed import seed
from auth.settings import Settings
from auth.store import Client
from charter.db import Database
from charter.migrations import upgrade


@pytest.fixture
def settings() -> Settings:
    return Settings(issuer=ISSUER, audience=AUDIENCE, session_secret="test-session-secret")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade("auth", MIGRATIONS_DIR, url)
    database = Database(url)
    seed(database)
    register_resource_server(database)
    yield database
    database.dispose()


def register_resource_server(database: Database) -> None:
    """A confidential client that introspects tokens (client credentials, no scope)."""
    client_id, secret = RESOURCE_SERVER
    with database.session() as session:
        client = Client(client_id=client_id, client_name="Test resource server",
                        grant_types=["client_credentials"], response_types=[],
                        redirect_uris=[], scope="",
                        token_endpoint_auth_method="client_secret_basic")
        client.set_secret(secret)
        session.add(client)


@pytest.fixture
def app(db: Database, settings: Settings) -> Flask:
    flask_app = create_flask_app(db, settings)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


