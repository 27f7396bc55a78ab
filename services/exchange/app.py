"""The exchange service's app factory (``uvicorn --factory services.exchange.app:create_asgi``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import connexion

from charter import config
from charter.cache import Cache, make_cache, redis_checks
from charter.db import Database, SqlUnitOfWork
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast
from charter.service import configure_logging
from charter.service import create_app as create_service_app

from .clients import HttpRateSource, TableRateSource, upstream_timeout
from .ports import RateSource
from .services import ExchangeMetrics, ExchangeService
from .settings import ExchangeConfig, load_config
from .store import SqlRatesRepository

NAME = "exchange"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_source(db: Database) -> RateSource:
    """``EXCHANGE_UPSTREAM_URL`` over HTTP when set, else the database's rate table."""
    url = ExchangeConfig.parse().exchange_upstream_url
    if url:
        return HttpRateSource(url, timeout=upstream_timeout())
    return TableRateSource(db)


def exchange_service(db: Database, source: RateSource, cache: Cache | None = None,
                     **options: Any) -> ExchangeService:
    """The service wired to its SQL adapters; ``options`` as :class:`ExchangeService` takes.

    ``ttl`` and ``stale_retry_after`` default to ``EXCHANGE_CACHE_TTL`` and
    ``EXCHANGE_STALE_RETRY`` (:class:`.settings.ExchangeConfig`).
    """
    settings = ExchangeConfig.parse()
    options.setdefault("ttl", settings.exchange_cache_ttl)
    options.setdefault("stale_retry_after", settings.exchange_stale_retry)
    return ExchangeService(SqlUnitOfWork(db, SqlRatesRepository), source, cache, **options)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    source: RateSource | None = None,
    cache: Cache | None = None,
    now: Callable[[], datetime] | None = None,
) -> connexion.FlaskApp:
    """The exchange app; defaults: configured database, JWKS verifier, source and cache.

    Readiness check ``rates`` (:meth:`ExchangeService.check_rates`): ``degraded`` (still
    ready) while the source fails and the last known rates are served stale, ``failed``
    only when the source fails and no rate was ever known. Its counters
    (``charter_exchange_*``) are process-wide and so on ``/metrics``.
    """
    db = db or Database(config.database_url(NAME))
    source = source or default_source(db)
    ttl = ExchangeConfig.parse().exchange_cache_ttl
    # The rates only expire (no write invalidates them): a per-worker cache is right.
    cache = cache if cache is not None else make_cache(NAME, default_ttl=ttl,
                                                      write_invalidated=False)
    metrics = ExchangeMetrics(NAME)
    exchange = exchange_service(db, source, cache, ttl=ttl, now=now, metrics=metrics)
    app = create_service_app(
        NAME,
        api_module="services.exchange.api",
        db=db,
        verifier=verifier,
        deps={"exchange": exchange, "source": source, "cache": cache, "metrics": metrics},
        checks={"rates": exchange.check_rates, **redis_checks(cache)},
    )
    return app


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """The production entry point: JSON logs, the configured database, source and cache."""
    load_config()  # fails closed: every missing or bad variable in one message
    configure_logging(NAME)
    return create_app(Database(config.database_url(NAME)))
