"""The loyalty service's app factory (``uvicorn --factory services.loyalty.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path

import connexion

from charter import config, service
from charter.db import Database, SqlUnitOfWork
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from .services import LoyaltyService
from .settings import LoyaltyConfig, load_config
from .store import SqlLoyaltyRepository

NAME = "loyalty"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def loyalty_service(db: Database, points_per_unit: int | None = None) -> LoyaltyService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository.

    ``points_per_unit`` defaults to ``LOYALTY_POINTS_PER_UNIT`` (1 point per whole unit).
    """
    if points_per_unit is None:
        points_per_unit = LoyaltyConfig.parse().loyalty_points_per_unit
    return LoyaltyService(SqlUnitOfWork(db, SqlLoyaltyRepository), points_per_unit)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    points_per_unit: int | None = None,
) -> connexion.FlaskApp:
    """The loyalty app; defaults: configured database, JWKS verifier,
    ``LOYALTY_POINTS_PER_UNIT`` (1 point per whole currency unit)."""
    db = db or Database(config.database_url(NAME))
    loyalty = loyalty_service(db, points_per_unit)
    return service.create_app(
        NAME,
        api_module="services.loyalty.api",
        db=db,
        verifier=verifier,
        deps={"loyalty": loyalty},
    )


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database, the app."""
    load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    return create_app(Database(config.database_url(NAME)))
