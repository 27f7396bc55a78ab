"""The notifications service's app factory
(``uvicorn --factory services.notifications.app:create_asgi``)."""

from __future__ import annotations

from pathlib import Path

import connexion

from charter import config, service
from charter.db import Database
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from .clients import make_provider
from .ports import NotificationProvider
from .services import NotificationService
from .settings import load_config
from .store import SqlNotificationRepository, idempotency_keys

NAME = "notifications"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def notification_service(db: Database, provider: NotificationProvider) -> NotificationService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository."""
    return NotificationService(keyed_unit_of_work(db, SqlNotificationRepository), provider)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    provider: NotificationProvider | None = None,
) -> connexion.FlaskApp:
    """The notifications app; defaults: configured database, JWKS verifier, and the
    provider from the environment (SMTP for email when ``SMTP_HOST`` is set, else the
    file sink; SMS always to the file sink)."""
    db = db or Database(config.database_url(NAME))
    provider = provider or make_provider()
    notifications = notification_service(db, provider)
    return service.create_app(
        NAME,
        api_module="services.notifications.api",
        db=db,
        verifier=verifier,
        deps={"notifications": notifications, "provider": provider},
    )


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database and provider."""
    load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    db = Database(config.database_url(NAME))
    app = create_app(db)
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    return app
