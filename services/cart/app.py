"""The cart service's app factory (``uvicorn --factory services.cart.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path

import connexion

from charter import config
from charter.db import Database, SqlUnitOfWork
from charter.security.client_credentials import service_token_provider
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast
from charter.service import configure_logging
from charter.service import create_app as create_service_app
from services.catalog_client.client import HttpCatalogClient

from .ports import CatalogPort
from .services import CartService
from .settings import CartConfig, load_config
from .store import SqlCartRepository

NAME = "cart"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    catalog: CatalogPort | None = None,
) -> connexion.FlaskApp:
    """The cart app; defaults come from the environment (see :func:`create_asgi`)."""
    db = db or Database(config.database_url(NAME))
    catalog = catalog or default_catalog()
    return create_service_app(
        NAME,
        api_module="services.cart.api",
        db=db,
        verifier=verifier,
        deps={"cart": CartService(SqlUnitOfWork(db, SqlCartRepository), catalog),
              "catalog": catalog},
    )


def default_catalog() -> HttpCatalogClient:
    """The catalog over HTTP (``CATALOG_URL``, ``CATALOG_TIMEOUT``), the cart client's token."""
    timeout = CartConfig.parse().catalog_timeout
    return HttpCatalogClient(
        config.service_url("catalog"),
        service_token_provider(NAME, timeout=timeout),
        timeout=timeout,
    )


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """The production entry point: JSON logs, the configured database and catalog."""
    load_config()  # fails closed: every missing or bad variable in one message
    configure_logging(NAME)
    db = Database(config.database_url(NAME))
    return create_app(db=db, catalog=default_catalog())
