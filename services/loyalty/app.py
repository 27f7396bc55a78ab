"""The loyalty service's app factory (``uvicorn --factory services.loyalty.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path

import connexion

from charter import config, service
from charter.db import Database
from charter.security.tokens import TokenVerifier

from .services import LoyaltyService

NAME = "loyalty"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    points_per_unit: int | None = None,
) -> connexion.FlaskApp:
    """The loyalty app; defaults: configured database, JWKS verifier,
    ``LOYALTY_POINTS_PER_UNIT`` (1 point per whole currency unit)."""
    db = db or Database(config.database_url(NAME))
    loyalty = LoyaltyService(db, points_per_unit=points_per_unit)
    return service.create_app(
        NAME,
        api_module="services.loyalty.api",
        db=db,
        verifier=verifier,
        deps={"loyalty": loyalty},
    )


def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database, the app."""
    service.configure_logging(NAME)
    return create_app(Database(config.database_url(NAME)))
