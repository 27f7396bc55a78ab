"""The payments service's app factory (``uvicorn --factory services.payments.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path

import connexion

from charter import config
from charter.db import Database
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast
from charter.service import configure_logging
from charter.service import create_app as create_service_app

from .clients import SimulatedProvider
from .ports import PaymentProvider
from .services import PaymentsService
from .settings import load_config
from .store import SqlPaymentsRepository, idempotency_keys

NAME = "payments"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_provider() -> PaymentProvider:
    """The configured provider: the simulated one (``PAYMENTS_DECLINE_ABOVE`` applies)."""
    return SimulatedProvider()


def payments_service(db: Database, provider: PaymentProvider) -> PaymentsService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository."""
    uow = keyed_unit_of_work(db, SqlPaymentsRepository)
    return PaymentsService(uow, provider)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    provider: PaymentProvider | None = None,
) -> connexion.FlaskApp:
    """The payments app; defaults: configured database, JWKS verifier, simulated provider."""
    db = db or Database(config.database_url(NAME))
    provider = provider or default_provider()
    return create_service_app(
        NAME,
        api_module="services.payments.api",
        db=db,
        verifier=verifier,
        deps={"payments": payments_service(db, provider), "provider": provider},
    )


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """The production entry point: JSON logs, the configured database and provider."""
    load_config()  # fails closed: every missing or bad variable in one message
    configure_logging(NAME)
    db = Database(config.database_url(NAME))
    app = create_app(db)
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    return app
