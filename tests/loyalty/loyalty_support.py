"""Helpers shared by the loyalty tests (importable: tests/loyalty is on sys.path)."""

from __future__ import annotations

from typing import Any

from charter import migrations
from charter.db import Database
from services.loyalty.app import MIGRATIONS_DIR

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def migrated(url: str) -> Database:
    """A database at ``url`` brought to the newest loyalty revision."""
    migrations.upgrade("loyalty", MIGRATIONS_DIR, url)
    return Database(url)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body
