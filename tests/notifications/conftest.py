"""Fixtures of the notifications tests: a migrated SQLite database, a fake provider, the
app, a client and callers' headers; ``tokens``, ``migrated_db`` and the rest come from
the shared plugin (tests/support/plugin.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from notifications_support import EMAIL, InMemoryProvider

from charter.db import Database
from charter.testing import TokenFactory
from services.notifications.app import create_app
from tests.support.plugin import bearer

ALL_SCOPES = "notifications:read notifications:write"

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("notifications", f"sqlite:///{tmp_path / 'notifications.db'}")


@pytest.fixture(autouse=True)
def _validate_responses(validate_responses: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Responses checked against the spec; the file sink, never a configured SMTP server."""
    for name in ("SMTP_HOST", "NOTIFICATIONS_OUTBOX_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def provider() -> InMemoryProvider:
    return InMemoryProvider()


@pytest.fixture
def app(db: Database, tokens: TokenFactory, provider: InMemoryProvider) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), provider=provider)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def auth(tokens: TokenFactory) -> Auth:
    """``auth("carol", role="staff")`` → headers of a token with both scopes."""

    def make(sub: str = "orders", scope: str = ALL_SCOPES, **claims: Any
             ) -> dict[str, str]:
        claims.setdefault("role", "service")
        return bearer(tokens.token(sub=sub, scope=scope, **claims))

    return make


@pytest.fixture
def send(client: Any, auth: Auth) -> Callable[..., Any]:
    """``send(body, key=None)`` → POST /v1/notifications as the internal client."""
    counter = itertools.count(1)

    def post(body: dict[str, Any] | None = None, key: str | None = None,
             headers: dict[str, str] | None = None) -> Any:
        key = key or f"test-key-{next(counter):06d}"
        return client.post("/v1/notifications", json=EMAIL if body is None else body,
                           headers={**(headers or auth()), "Idempotency-Key": key})

    return post
