"""Fixtures of the catalog tests: a migrated SQLite file, the app and seeded objects.

``tokens``, ``migrated_db``, ``client`` (of ``app``), ``postgres_url``, ``redis_url``… come
from the shared plugin (``tests/support/plugin.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalog_support import seed_small

from charter.cache import Cache, TTLCache
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog.app import create_app
from services.catalog.services import CatalogService

ALL_SCOPES = "catalog:read catalog:write catalog:reserve"


@pytest.fixture
def db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.fixture
def cache() -> Cache:
    return TTLCache()


@pytest.fixture
def app(db: Database, tokens: TokenFactory, cache: Cache,
        validate_responses: None) -> Any:
    return create_app(db=db, verifier=tokens.verifier(), cache=cache)


@pytest.fixture
def auth(tokens: TokenFactory) -> Callable[..., dict[str, str]]:
    """Headers with a bearer token carrying ``scope`` (all catalog scopes by default)."""

    def headers(scope: str = ALL_SCOPES, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.token(scope=scope)}", **extra}

    return headers


@pytest.fixture
def service(app: Any) -> CatalogService:
    svc: CatalogService = app.app.extensions["charter"].deps["catalog"]
    return svc


@pytest.fixture
def seeded(service: CatalogService) -> dict[str, Any]:
    return seed_small(service)
