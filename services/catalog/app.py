"""The catalog service's app factory (``uvicorn --factory services.catalog.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import connexion

from charter import config, service
from charter.cache import Cache, make_cache
from charter.db import Database
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from .services import CatalogService
from .settings import load_config
from .store import SqlCatalogRepository, idempotency_keys

NAME = "catalog"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def catalog_service(db: Database, cache: Cache | None = None) -> CatalogService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository."""
    return CatalogService(keyed_unit_of_work(db, SqlCatalogRepository), cache)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    cache: Cache | None = None,
) -> connexion.FlaskApp:
    """The catalog app; defaults: configured database, JWKS verifier, cache from REDIS_URL.

    The cache is not a readiness check: reads fall through to the database when Redis fails.
    """
    db = db or Database(config.database_url(NAME))
    cache = cache if cache is not None else make_cache(NAME)
    catalog = catalog_service(db, cache)
    deps: dict[str, Any] = {"catalog": catalog, "cache": cache}
    return service.create_app(
        NAME,
        api_module="services.catalog.api",
        db=db,
        verifier=verifier,
        deps=deps,
    )


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database, the app."""
    load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    db = Database(config.database_url(NAME))
    app = create_app(db)
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    return app
