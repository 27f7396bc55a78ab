"""The catalog service's app factory (``uvicorn --factory services.catalog.app:create_asgi``).

:func:`create_asgi` also starts the catalog's messaging (:func:`catalog_messaging`: the
relay of ``StockChanged`` and ``LowStock`` from the outbox, run by the worker holding the
leader lock; ``CHARTER_MESSAGING=off`` starts none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import connexion

from charter import config, service
from charter.cache import Cache, make_cache, redis_checks
from charter.db import Database
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.messaging import runtime
from charter.messaging.broker import Broker
from charter.messaging.runtime import Messaging
from charter.read_replica import replica_checks
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from .services import CatalogService
from .settings import CatalogConfig, load_config
from .store import SqlCatalogRepository, idempotency_keys, outbox

NAME = "catalog"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def catalog_service(db: Database, cache: Cache | None = None, *,
                    low_stock_threshold: int | None = None) -> CatalogService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository.

    ``low_stock_threshold`` defaults to ``CATALOG_LOW_STOCK_THRESHOLD`` (ConfigError if bad).
    """
    if low_stock_threshold is None:
        low_stock_threshold = CatalogConfig.parse().catalog_low_stock_threshold
    return CatalogService(keyed_unit_of_work(db, SqlCatalogRepository), cache,
                          low_stock_threshold=low_stock_threshold)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    cache: Cache | None = None,
    low_stock_threshold: int | None = None,
    *,
    messaging: Messaging | None = None,
) -> connexion.FlaskApp:
    """The catalog app; defaults: configured database, JWKS verifier, cache from REDIS_URL,
    low-stock threshold from ``CATALOG_LOW_STOCK_THRESHOLD``.

    With Redis as the cache, the readiness check ``redis`` reports it ``degraded`` (never
    down) when it fails: reads fall through to the database.
    ``messaging`` (see :func:`catalog_messaging`) adds the readiness check ``broker``; the
    caller starts it.
    With ``CATALOG_DATABASE_READ_URL`` (a standby), read-only use cases run on it when it
    is caught up (:meth:`charter.db.Database.read`) and the readiness check
    ``database-replica`` reports it ``degraded`` (never down) when it cannot serve them.
    """
    db = db or catalog_database()
    cache = cache if cache is not None else make_cache(NAME)
    catalog = catalog_service(db, cache, low_stock_threshold=low_stock_threshold)
    deps: dict[str, Any] = {"catalog": catalog, "cache": cache}
    return service.create_app(
        NAME,
        api_module="services.catalog.api",
        db=db,
        verifier=verifier,
        deps=deps,
        checks={**redis_checks(cache), **replica_checks(db.replica)},
        messaging=messaging,
    )


def catalog_database() -> Database:
    """``CATALOG_DATABASE_URL`` (or ``DATABASE_URL``) for writes, ``CATALOG_DATABASE_READ_URL``
    (optional standby) for read-only use cases."""
    return Database(config.database_url(NAME), read_url=config.database_read_url(NAME),
                    service=NAME)


def catalog_messaging(db: Database, *, broker: Broker | Callable[[], Broker] | None = None,
                      **options: Any) -> Messaging:
    """The catalog's relay (what :data:`.store.outbox` holds; no consumers), run by the
    worker holding ``catalog-messaging``; ``broker`` ``None`` = ``AMQP_URL`` (else, in
    development mode, the embedded broker). ``options``: see
    :class:`charter.messaging.runtime.Messaging`."""
    return Messaging(NAME, db, outbox=outbox, broker=broker, **options)


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database, the app."""
    cfg = load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    db = catalog_database()
    messaging = catalog_messaging(db) if runtime.enabled() else None
    app = create_app(db, low_stock_threshold=cfg.catalog_low_stock_threshold,
                     messaging=messaging)
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    if messaging is not None:
        messaging.start()  # in every worker; the one holding the lock leads
    return app
