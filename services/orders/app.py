"""The orders service's app factory (``uvicorn --factory services.orders.app:create_asgi``).

Outbound dependencies default to the HTTP adapters (URLs from ``charter.config.service_url``,
timeouts from ``<NAME>_TIMEOUT``, tokens of the orders client: one token with the scopes
the dependency manifest derives);
tests pass in-memory fakes. :func:`create_asgi` also starts the recovery loop: once at
start-up, then every ``ORDERS_RECOVERY_INTERVAL`` seconds (default 30; 0 = only at start),
and orders' messaging (:func:`orders_messaging`: the relay of ``OrderConfirmed`` and
``OrderCancelled`` from the outbox, run by the worker holding the leader lock;
``CHARTER_MESSAGING=off`` starts none).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import connexion

from charter import config
from charter.db import Database, utcnow
from charter.idempotency_store import keyed_unit_of_work, start_purger
from charter.messaging import runtime
from charter.messaging.broker import Broker
from charter.messaging.runtime import Consumes, Messaging
from charter.security.client_credentials import service_token_provider
from charter.security.tokens import TokenVerifier
from charter.serve import fails_fast
from charter.service import configure_logging
from charter.service import create_app as create_service_app
from charter.wsgi_bridge import DEFAULT_THREADS
from services.catalog_client.client import HttpCatalogClient

from .checkout import CheckoutService
from .clients import HttpCart, HttpExchange, HttpPayments
from .messaging import SUBSCRIPTIONS, OrderReplies
from .ports import (
    CartPort,
    CatalogPort,
    CheckoutPaymentsPort,
    ConversionOutcome,
    ExchangePort,
    PaymentOutcome,
    PaymentsPort,
)
from .saga_runner import SagaRunner, ThreadSagaRunner
from .services import OrderService
from .settings import OrdersConfig, load_config
from .store import SqlOrderRepository, idempotency_keys, inbox, outbox

log = logging.getLogger(__name__)

NAME = "orders"
VERSIONS = ("v1", "v2")  # v1 deprecated (governance/deprecation.yaml), v2 its successor
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_RECOVERY_INTERVAL = 30.0
# A periodic sweep leaves alone what changed in the last seconds (requests still at work).
RECOVERY_GRACE = timedelta(seconds=10)


def create_app(
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    catalog: CatalogPort | None = None,
    cart: CartPort | None = None,
    payments: PaymentsPort | None = None,
    checkout_payments: CheckoutPaymentsPort | None = None,
    exchange: ExchangePort | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    messaging: Messaging | None = None,
    runner: SagaRunner | None = None,
) -> connexion.FlaskApp:
    """The orders app (v1 and v2 side by side); every dependency not given is the
    configured HTTP adapter (``checkout_payments``: ``payments`` when it is one).

    ``clock`` is the service's time (orders, idempotency keys and v1's sunset alike;
    tests move it). ``messaging`` (see :func:`orders_messaging`) adds the readiness
    check ``broker``; starting it is the caller's job (:func:`create_asgi` does).
    ``runner`` runs the checkout saga's passes (default: in the request,
    :class:`.saga_runner.InlineSagaRunner`; :func:`create_asgi` uses threads).
    """
    db = db or Database(config.database_url(NAME))
    payments = payments or default_payments()
    if checkout_payments is None:
        checkout_payments = (payments if isinstance(payments, CheckoutPaymentsPort)
                             else LazyCheckoutPayments())
    settings = OrdersConfig.parse()
    service = CheckoutService(
        keyed_unit_of_work(db, SqlOrderRepository, clock=clock),  # keys on the same clock
        catalog or default_catalog(),
        cart or default_cart(),
        payments,
        checkout_payments,
        exchange or LazyExchange(),
        clock=clock,
        deadline=timedelta(seconds=settings.orders_checkout_deadline),
        runner=runner,
    )
    return create_service_app(
        NAME,
        api_module={"v1": "services.orders.api", "v2": "services.orders.api_v2"},
        versions=VERSIONS,
        db=db,
        verifier=verifier,
        deps={"orders": service},
        clock=clock,
        messaging=messaging,
        threads=DEFAULT_THREADS + settings.orders_max_waiting,  # waiting checkouts' own
    )


def orders_messaging(db: Database, *, consumes: Sequence[Consumes] = (),
                     broker: Broker | Callable[[], Broker] | None = None,
                     **options: Any) -> Messaging:
    """Orders' relay (what :data:`services.orders.store.outbox` holds) and ``consumes``,
    run by the worker holding ``orders-messaging``; ``broker`` ``None`` = ``AMQP_URL``
    (else, in development mode, the embedded broker). ``options``: see
    :class:`charter.messaging.runtime.Messaging`."""
    return Messaging(NAME, db, outbox=outbox, inbox=inbox, consumes=consumes, broker=broker,
                     **options)


class LazyCheckoutPayments(CheckoutPaymentsPort):
    """The HTTP payments adapter, built on first use (an app given another ``payments``,
    e.g. a test fake for v1, needs no payments configuration until v2 pays)."""

    def __init__(self) -> None:
        self._http: HttpPayments | None = None

    def _adapter(self) -> HttpPayments:
        if self._http is None:
            self._http = default_payments()
        return self._http

    def authorize(self, order_id: str, customer_id: str, amount: int, currency: str,
                  method: str, key: str) -> PaymentOutcome:
        return self._adapter().authorize(order_id, customer_id, amount, currency, method, key)

    def capture(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._adapter().capture(payment_id, key)

    def void(self, payment_id: str, key: str) -> PaymentOutcome:
        return self._adapter().void(payment_id, key)

    def refund(self, payment_id: str, key: str, reason: str) -> PaymentOutcome:
        return self._adapter().refund(payment_id, key, reason)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


class LazyExchange(ExchangePort):
    """The HTTP exchange adapter, built on first use (only orders in another currency
    than EUR need it)."""

    def __init__(self) -> None:
        self._http: HttpExchange | None = None

    def convert(self, amount: int, source: str, target: str) -> ConversionOutcome:
        if self._http is None:
            timeout = OrdersConfig.parse().exchange_timeout
            self._http = HttpExchange(config.service_url("exchange"),
                                      service_token_provider(NAME, timeout=timeout),
                                      timeout=timeout)
        return self._http.convert(amount, source, target)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def order_service(app: connexion.FlaskApp) -> OrderService:
    """The :class:`OrderService` behind an app made by :func:`create_app`."""
    service: OrderService = app.app.extensions["charter"].deps["orders"]
    return service


def checkout_service(app: connexion.FlaskApp) -> CheckoutService:
    """The :class:`CheckoutService` behind an app made by :func:`create_app`."""
    service: CheckoutService = app.app.extensions["charter"].deps["orders"]
    return service


def resume_pending(app: connexion.FlaskApp, now: datetime | None = None) -> dict[str, int]:
    """Run recovery once on ``app``'s orders (see :meth:`OrderService.resume_pending`)."""
    return order_service(app).resume_pending(now)


def default_catalog() -> HttpCatalogClient:
    timeout = OrdersConfig.parse().catalog_timeout
    return HttpCatalogClient(
        config.service_url("catalog"),
        service_token_provider(NAME, timeout=timeout),
        service_token_provider(NAME, timeout=timeout),
        timeout=timeout,
    )


def default_cart() -> HttpCart:
    return HttpCart(config.service_url("cart"), timeout=OrdersConfig.parse().cart_timeout)


def default_payments() -> HttpPayments:
    timeout = OrdersConfig.parse().payments_timeout
    return HttpPayments(config.service_url("payments"),
                        service_token_provider(NAME, timeout=timeout),
                        timeout=timeout)


def recovery_interval() -> float:
    """``ORDERS_RECOVERY_INTERVAL`` seconds (default 30; 0 = recover only at start)."""
    return OrdersConfig.parse().orders_recovery_interval


def start_recovery(service: OrderService, interval: float,
                   stop: threading.Event | None = None) -> threading.Thread:
    """Run recovery now and then every ``interval`` seconds (0: once), in a daemon thread."""
    stop = stop or threading.Event()

    def loop() -> None:
        now: datetime | None = None  # at start-up: everything unfinished
        while True:
            try:
                service.resume_pending(now)
            except Exception:  # the database may not be ready yet: try again later
                log.exception("order recovery failed")
            if interval <= 0 or stop.wait(interval):
                return
            now = utcnow() - RECOVERY_GRACE

    thread = threading.Thread(target=loop, name="orders-recovery", daemon=True)
    thread.start()
    return thread


@fails_fast
def create_asgi() -> connexion.FlaskApp:
    """The production entry point: JSON logs, configured database and services, recovery."""
    load_config()  # fails closed: every missing or bad variable in one message
    configure_logging(NAME)
    db = Database(config.database_url(NAME))
    messaging = orders_messaging(db, consumes=[
        Consumes(sub, OrderReplies(db)) for sub in SUBSCRIPTIONS]) if runtime.enabled() else None
    settings = OrdersConfig.parse()
    runner = ThreadSagaRunner(lambda order: checkout_service(app).settled(order),
                              workers=settings.orders_saga_workers,
                              max_waiting=settings.orders_max_waiting)
    app = create_app(db=db, messaging=messaging, runner=runner)
    start_recovery(order_service(app), recovery_interval())
    start_purger(db, idempotency_keys, name=NAME)  # expired idempotency keys
    if messaging is not None:
        messaging.start()  # in every worker; the one holding the lock leads
    return app
