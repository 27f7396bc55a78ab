"""The auth migrations and a token round trip on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable

from auth_helpers import client_credentials, jwks_verify

from auth.app import MIGRATIONS_DIR, create_flask_app
from auth.keys import rotate
from auth.seed import seed
from auth.settings import Settings
from charter.db import Database
from charter.migrations import upgrade


def test_migrate_seed_and_issue_on_postgres(
        postgres_url: str, migrated_db: Callable[[str, str], Database],
        settings: Settings) -> None:
    db = migrated_db("auth", postgres_url)
    upgrade("auth", MIGRATIONS_DIR, postgres_url)  # idempotent
    assert db.engine.dialect.name == "postgresql"
    seed(db)
    seed(db)
    client = create_flask_app(db, settings).test_client()
    token = client_credentials(client).get_json()["access_token"]
    rotate(db)
    assert jwks_verify(client, token)["sub"] == "demo-cli"
    response = client.post("/register", json={"email": "pg@example.com",
                                               "password": "pg-password-1"})
    assert response.status_code == 201
