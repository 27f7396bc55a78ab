"""The loyalty service's app factory (``uvicorn --factory services.loyalty.app:create_asgi``).

:func:`create_asgi` also starts loyalty's messaging (:func:`loyalty_messaging`: the
consumer of ``loyalty.orders`` and the relay of its replies, run by the worker holding
the leader lock; ``CHARTER_MESSAGING=off`` starts none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import connexion

from charter import config, service
from charter.db import Database, SqlUnitOfWork
from charter.messaging import runtime
from charter.messaging.broker import Broker
from charter.messaging.runtime import Consumes, Messaging
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast

from . import metrics
from .messaging import SUBSCRIPTIONS, OrderEvents
from .services import LoyaltyService
from .settings import LoyaltyConfig, load_config
from .store import SqlLoyaltyRepository, inbox, outbox

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
    *,
    messaging: Messaging | None = None,
) -> connexion.FlaskApp:
    """The loyalty app; defaults: configured database, JWKS verifier,
    ``LOYALTY_POINTS_PER_UNIT`` (1 point per whole currency unit). ``messaging`` (see
    :func:`loyalty_messaging`) adds the readiness check ``broker``; the caller starts it."""
    db = db or Database(config.database_url(NAME))
    loyalty = loyalty_service(db, points_per_unit)
    return service.create_app(
        NAME,
        api_module="services.loyalty.api",
        db=db,
        verifier=verifier,
        deps={"loyalty": loyalty},
        messaging=messaging,
    )


def loyalty_messaging(db: Database, *, points_per_unit: int | None = None,
                      broker: Broker | Callable[[], Broker] | None = None,
                      **options: Any) -> Messaging:
    """Loyalty's consumer of ``loyalty.orders`` (:class:`.messaging.OrderEvents`) and the
    relay of its replies; ``broker`` ``None`` = ``AMQP_URL`` (else, in development mode,
    the embedded broker). ``options``: see :class:`charter.messaging.runtime.Messaging`."""
    handler = OrderEvents(db, points_per_unit)
    return Messaging(NAME, db, outbox=outbox, inbox=inbox, broker=broker,
                     consumes=[Consumes(sub, handler, on_depth=metrics.set_pending)
                               for sub in SUBSCRIPTIONS], **options)


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """ASGI entry point for uvicorn: JSON logs, the configured database, the app."""
    load_config()  # fails closed: every missing or bad variable in one message
    service.configure_logging(NAME)
    db = Database(config.database_url(NAME))
    messaging = loyalty_messaging(db) if runtime.enabled() else None
    app = create_app(db, messaging=messaging)
    if messaging is not None:
        messaging.start()  # in every worker; the one holding the lock leads
    return app
