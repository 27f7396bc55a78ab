"""Fixtures: a migrated, seeded SQLite auth database (a per-test copy of one migrated and
seeded once per session) in tmp_path and a Flask test client.

Password hashing runs at a test cost (``TEST_ARGON2``, a development-mode-only cost) for
every module here; ``test_auth_passwords.py`` proves the production cost and that it is
the one used outside development mode.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import AUDIENCE, ISSUER, RESOURCE_SERVER, use_test_hashing
from flask import Flask
from flask.testing import FlaskClient

from auth import passwords
from auth.app import create_flask_app
from auth.seed import seed
from auth.settings import Settings
from auth.store import Client
from charter.db import Database
from tests.support.plugin import migrated_database


@pytest.fixture(scope="module", autouse=True)
def test_password_hashing() -> Iterator[None]:
    """Every module of the auth tests hashes at the test cost; afterwards the process
    reads ``AUTH_ARGON2_*`` again (other test directories are not affected)."""
    use_test_hashing()
    yield
    passwords.reset()


@pytest.fixture
def settings() -> Settings:
    return Settings(issuer=ISSUER, audience=AUDIENCE, session_secret="test-session-secret")


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """auth's SQLite database migrated and seeded once per session, next to the var dir
    holding the development secrets the seed generated; each test gets its own copy."""
    base = tmp_path_factory.mktemp("auth-template")
    use_test_hashing()  # runs before the module fixture: seed at the test cost too
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARTER_ENV", "development")
        patch.setenv("CHARTER_VAR_DIR", str(base / "var"))
        database = migrated_database("auth", f"sqlite:///{base / 'auth.db'}")
        seed(database)
        register_resource_server(database)
        database.dispose()
    return base


@pytest.fixture
def db(seeded_template: Path, tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A fresh copy of the migrated, seeded database (and its var dir) for this test."""
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    if (seeded_template / "var").is_dir():
        shutil.copytree(seeded_template / "var", tmp_path / "var")
    for path in seeded_template.glob("auth.db*"):
        shutil.copyfile(path, tmp_path / path.name)
    database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
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


