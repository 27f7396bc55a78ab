"""The app factory: defaults from the environment, health, recovery at start-up."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from orders_fakes import InMemoryCatalog
from orders_support import Auth, place_pending

from charter import config
from charter.db import Database
from charter.testing import TokenFactory
from services.catalog_client.client import HttpCatalogClient
from services.orders import app as orders_app
from services.orders.clients import HttpCart, HttpPayments
from services.orders.settings import OrdersConfig
from tests.support.plugin import wait_until


def test_defaults_are_http_adapters_from_the_environment(
    db: Database, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    monkeypatch.setenv("CATALOG_URL", "http://catalog.test:1")
    monkeypatch.setenv("PAYMENTS_TIMEOUT", "0.5")
    app = orders_app.create_app(db=db, verifier=tokens.verifier())
    service = orders_app.order_service(app)
    assert isinstance(service.catalog, HttpCatalogClient)
    assert service.catalog.base_url == "http://catalog.test:1"
    assert isinstance(service.cart, HttpCart)
    assert service.cart.base_url == config.service_url("cart")
    assert isinstance(service.payments, HttpPayments)
    assert service.payments.http.timeout == 0.5


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_timeouts_are_config_errors(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CATALOG_TIMEOUT", value)
    with pytest.raises(config.ConfigError, match="CATALOG_TIMEOUT"):
        OrdersConfig.parse()


def test_recovery_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert orders_app.recovery_interval() == orders_app.DEFAULT_RECOVERY_INTERVAL
    monkeypatch.setenv("ORDERS_RECOVERY_INTERVAL", "0")
    assert orders_app.recovery_interval() == 0
    for bad in ("soon", "-5"):
        monkeypatch.setenv("ORDERS_RECOVERY_INTERVAL", bad)
        with pytest.raises(config.ConfigError):
            orders_app.recovery_interval()


def test_health(client: Any) -> None:
    assert client.get("/health/live").json() == {"status": "ok", "service": "orders"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}


def test_start_up_recovery_reserves_pending_orders(
    app: Any, client: Any, auth: Auth, catalog: InMemoryCatalog
) -> None:
    order = place_pending(client, auth(), {"items": [{"product_id": 1, "quantity": 1}]},
                          catalog)
    thread = orders_app.start_recovery(orders_app.order_service(app), interval=0)
    thread.join(10)
    assert not thread.is_alive()
    assert catalog.reservations[order["id"]].status == "held"
    assert client.get(f"/v1/orders/{order['id']}", headers=auth()).json()["status"] == "reserved"


def test_the_recovery_loop_repeats_until_stopped(app: Any) -> None:
    service = orders_app.order_service(app)
    runs: list[Any] = []

    def record(now: Any = None, only: Any = None) -> dict[str, int]:
        runs.append(now)
        return {}

    service.resume_pending = record  # type: ignore[method-assign]
    stop = threading.Event()
    thread = orders_app.start_recovery(service, interval=0.01, stop=stop)
    wait_until(lambda: len(runs) >= 3, timeout=5, what="three recovery runs")
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert runs[0] is None and runs[1] is not None  # start-up: everything; then a grace


def test_resume_pending_helper(app: Any) -> None:
    assert orders_app.resume_pending(app) == {}
