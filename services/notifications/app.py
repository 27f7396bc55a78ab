"""The notifications service's app factory
(``uvicorn --factory services.notifications.app:create_asgi``).

:func:`create_asgi` also starts notifications' messaging (:func:`notifications_messaging`:
the consumer of ``notifications.events`` and the relay of ``NotificationSent``, run by the
worker holding the leader lock; ``CHARTER_MESSAGING=off`` starts none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import connexion

from charter import config, service
from charter.db import Database
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.messaging import runtime
from charter.messaging.broker import Broker
from charter.messaging.runtime import Consumes, Messaging
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from .clients import make_provider
from .messaging import SUBSCRIPTIONS, EventNotifications
from .ports import NotificationProvider
from .services import NotificationService
from .settings import load_config
from .store import SqlNotificationRepository, idempotency_keys, inbox, outbox

NAME = "notifications"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def notification_service(db: Database, provider: NotificationProvider) -> NotificationService:
    """The service wired to its SQL adapters: a unit of work on ``db`` and the repository."""
    return NotificationService(keyed_unit_of_work(db, SqlNotificationRepository), provider)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    provider: NotificationProvider | None = None,
    *,
    messaging: Messaging | None = None,
) -> connexion.FlaskApp:
    """The notifications app; defaults: configured database, JWKS verifier, and the
    provider from the environment (SMTP for email when ``SMTP_HOST`` is set, else the
    file sink; SMS always to the file sink). ``messaging`` (see
    :func:`notifications_messaging`) adds the readiness check ``broker``; the caller
    starts it."""
    db = db or Database(config.database_url(NAME))
    provider = provider or make_provider()
    notifications = notification_service(db, provider)
    return service.create_app(
        NAME,
        api_module="services.notifications.api",
        db=db,
        verifier=verifier,
        deps={"notifications": notifications, "provider": provider},
        messaging=messaging,
    )


def notifications_messaging(db: Database, provider: NotificationProvider, *,
                            broker: Broker | Callable[[], Broker] | None = None,
                            **options: Any) -> Messaging:
    """Notifications' consumer of ``notifications.events``
    (:class:`.messaging.EventNotifications`, sending through ``provider``) and the relay
    of ``NotificationSent``; ``broker`` ``None`` = ``AMQP_URL`` (else, in development mode,
    the embedded broker). ``options``: see :class:`charter.messaging.runtime.Messaging`."""
    handler = EventNotifications(db, provider)
    return Messaging(NAME, db, outbox=outbox, inbox=inbox, broker=broker,
                     consumes=[Consumes(sub, handler) for sub in SUBSCRIPTIONS], **options)


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database and provider."""
    load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    db = Database(config.database_url(NAME))
    provider = make_provider()
    messaging = notifications_messaging(db, provider) if runtime.enabled() else None
    app = create_app(db, provider=provider, messaging=messaging)
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    if messaging is not None:
        messaging.start()  # in every worker; the one holding the lock leads
    return app
