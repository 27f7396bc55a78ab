"""The catalog publishes ``catalog.StockChanged`` and ``catalog.LowStock`` through its outbox.

Every stock movement (set, adjust, return, reserve, commit, release) writes StockChanged
with the new figures in the movement's transaction; LowStock is written once per crossing
of the threshold from above to at or below it; a failed movement leaves neither. Checked
on SQLite and PostgreSQL (``any_database_url``) against the real outbox table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalog_support import seed_small
from kombu import Queue
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from charter.cache import TTLCache
from charter.config import ConfigError
from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.envelope import Envelope
from charter.messaging.leader import LeaderLock
from charter.problems import Conflict
from services.catalog import events
from services.catalog.app import catalog_messaging, catalog_service
from services.catalog.services import CatalogService
from services.catalog.settings import CatalogConfig
from services.catalog.store import SqlCatalogRepository, outbox
from tests.support.brokers import BACKENDS, temporary_broker, unique
from tests.support.plugin import run_threads
from tests.support.polling import wait_until


def published(db: Database, type_: str | None = None) -> list[Envelope]:
    """The outbox's envelopes in position order (only ``type_`` when given)."""
    t = outbox.table
    with db.session() as session:
        rows = session.execute(select(t.c.routing_key, t.c.body).order_by(t.c.position)).all()
    found = [Envelope.from_json(body) for _key, body in rows]
    assert [e.routing_key for e in found] == [key for key, _body in rows]
    return [e for e in found if type_ is None or e.type == type_]


def figures(db: Database, product_id: int) -> list[tuple[int, int, int, str]]:
    """(on_hand, reserved, available, reason) of each StockChanged of ``product_id``."""
    return [(e.data["on_hand"], e.data["reserved"], e.data["available"], e.data["reason"])
            for e in published(db, "StockChanged") if e.data["product_id"] == product_id]


def low(db: Database, product_id: int) -> list[dict[str, Any]]:
    return [dict(e.data) for e in published(db, "LowStock")
            if e.data["product_id"] == product_id]


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("catalog", any_database_url)


def new_product(service: CatalogService, sku: str = "EVT-0001") -> int:
    category = service.create_category(slug=f"cat-{sku.lower()}", name="Events")
    return service.create_product(sku=sku, name="Event beans", category_id=category.id,
                                  price=990, currency="EUR").id


# --- envelopes -----------------------------------------------------------------------


def test_envelopes_carry_the_fixed_payloads() -> None:
    changed = events.stock_changed(7, 12, 3, "reserve")
    assert changed.routing_key == "catalog.StockChanged"
    assert dict(changed.data) == {"product_id": 7, "on_hand": 12, "reserved": 3,
                                  "available": 9, "reason": "reserve"}
    alert = events.low_stock(7, 4, 5)
    assert alert.routing_key == "catalog.LowStock"
    assert dict(alert.data) == {"product_id": 7, "available": 4, "threshold": 5}
    with pytest.raises(ValueError):
        events.stock_changed(7, 12, 3, "goods receipt")


@pytest.mark.parametrize("before, after, crossed", [
    (6, 5, True), (10, 0, True), (6, 6, False), (5, 4, False), (4, 6, False), (0, 5, False),
])
def test_crossing_is_from_above_to_at_or_below(before: int, after: int, crossed: bool) -> None:
    assert events.crossed_low_stock(before, after, 5) is crossed


# --- every movement ------------------------------------------------------------------


def test_every_movement_writes_stock_changed(any_db: Database) -> None:
    service = catalog_service(any_db, TTLCache(), low_stock_threshold=0)
    pid = new_product(service)
    assert published(any_db) == []  # creating a product is not a movement
    service.set_stock(pid, 20)
    service.set_stock(pid, 20)  # no change, no event
    service.adjust_stock(pid, 5, "goods receipt")
    service.adjust_stock(pid, 3, " Return ")  # an adjustment whatever the text: a return
    service.adjust_stock(pid, -2, "return")  # is POST …/return (test_catalog_return.py)
    service.create_reservation("evt-key-1", "evt-order-1", [{"product_id": pid, "quantity": 4}])
    service.create_reservation("evt-key-1", "evt-order-1", [{"product_id": pid, "quantity": 4}])
    service.commit_reservation("evt-commit-1", "evt-order-1")
    service.commit_reservation("evt-commit-2", "evt-order-1")  # already committed: no move
    service.create_reservation("evt-key-2", "evt-order-2", [{"product_id": pid, "quantity": 6}])
    service.release_reservation("evt-release-2", "evt-order-2")
    assert figures(any_db, pid) == [
        (20, 0, 20, "set"), (25, 0, 25, "adjust"), (28, 0, 28, "adjust"),
        (26, 0, 26, "adjust"), (26, 4, 22, "reserve"), (22, 0, 22, "commit"),
        (22, 6, 16, "reserve"), (22, 0, 22, "release"),
    ]
    bodies = " ".join(e.to_json() for e in published(any_db))
    assert "goods receipt" not in bodies  # the free text stays in the catalog


def test_one_event_per_product_of_a_reservation(any_db: Database) -> None:
    service = catalog_service(any_db, TTLCache(), low_stock_threshold=0)
    seeded = seed_small(service)
    a, b = seeded["spare"]["id"], seeded["product"]["id"]
    start = len(published(any_db))
    service.create_reservation("multi-key", "multi-order", [
        {"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 2}])
    new = published(any_db)[start:]
    assert {(e.data["product_id"], e.data["reserved"], e.data["reason"]) for e in new} == {
        (a, 1, "reserve"), (b, 2, "reserve")}
    with pytest.raises(Conflict):  # short on one product: nothing moves, nothing published
        service.create_reservation("short-key", "short-order", [
            {"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 99}])
    assert len(published(any_db)) == start + 2


# --- low stock -----------------------------------------------------------------------


def test_low_stock_once_per_crossing(any_db: Database) -> None:
    service = catalog_service(any_db, TTLCache(), low_stock_threshold=5)
    pid = new_product(service)
    service.set_stock(pid, 10)                    # up from 0: not a crossing down
    service.adjust_stock(pid, -4)                 # 6: still above
    assert low(any_db, pid) == []
    service.create_reservation("low-1", "low-order-1", [{"product_id": pid, "quantity": 1}])
    assert low(any_db, pid) == [{"product_id": pid, "available": 5, "threshold": 5}]
    service.adjust_stock(pid, -2)                 # 3: below already, no second alert
    service.commit_reservation("low-c1", "low-order-1")  # available unchanged
    service.set_stock(pid, 1)                     # 1: still below
    assert len(low(any_db, pid)) == 1
    service.set_stock(pid, 30)                    # back up
    service.create_reservation("low-2", "low-order-2", [{"product_id": pid, "quantity": 27}])
    assert low(any_db, pid) == [{"product_id": pid, "available": 5, "threshold": 5},
                                {"product_id": pid, "available": 3, "threshold": 5}]
    service.release_reservation("low-r2", "low-order-2")  # up again: no alert
    assert len(low(any_db, pid)) == 2
    changed = published(any_db)
    first_low = next(i for i, e in enumerate(changed) if e.type == "LowStock")
    assert changed[first_low - 1].type == "StockChanged"  # the alert follows its movement


def test_each_crossing_counts_once_in_the_low_stock_metric(any_db: Database) -> None:
    """``charter_catalog_low_stock_events_total`` (the LowStock alert's input) moves with
    each LowStock event written, not with other movements."""
    from prometheus_client import REGISTRY

    def count() -> float:
        return REGISTRY.get_sample_value("charter_catalog_low_stock_events_total",
                                         {"service": "catalog"}) or 0.0

    service = catalog_service(any_db, TTLCache(), low_stock_threshold=5)
    pid = new_product(service)
    before = count()
    service.set_stock(pid, 10)
    service.adjust_stock(pid, -4)                 # 6: above the threshold
    assert count() == before
    service.adjust_stock(pid, -3)                 # 3: crossed
    service.adjust_stock(pid, -1)                 # 2: already below
    assert count() == before + 1 == before + len(low(any_db, pid))


def test_concurrent_reservations_cross_once(any_db: Database) -> None:
    service = catalog_service(any_db, TTLCache(), low_stock_threshold=5)
    pid = new_product(service)
    service.set_stock(pid, 10)
    results = run_threads(10, lambda i: service.create_reservation(
        f"race-{i}", f"race-order-{i}", [{"product_id": pid, "quantity": 1}]))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert low(any_db, pid) == [{"product_id": pid, "available": 5, "threshold": 5}]
    assert sorted(f[1] for f in figures(any_db, pid) if f[3] == "reserve") == list(range(1, 11))


# --- rolled back with the movement ---------------------------------------------------


def test_events_roll_back_with_the_movement(any_db: Database,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    service = catalog_service(any_db, TTLCache(), low_stock_threshold=5)
    pid = new_product(service)
    service.set_stock(pid, 6)
    start = published(any_db)
    original = SqlCatalogRepository.add_events

    def add_then_fail(self: SqlCatalogRepository, *envelopes: Envelope) -> None:
        original(self, *envelopes)
        raise RuntimeError("the transaction fails after writing its events")

    monkeypatch.setattr(SqlCatalogRepository, "add_events", add_then_fail)
    with pytest.raises(RuntimeError):
        service.adjust_stock(pid, -1)  # would cross: StockChanged + LowStock
    with pytest.raises(RuntimeError):
        service.create_reservation("rb-key", "rb-order", [{"product_id": pid, "quantity": 2}])
    assert published(any_db) == start
    assert service.get_stock(pid).available == 6
    monkeypatch.undo()
    service.adjust_stock(pid, -1)  # the crossing is still there to be published, once
    assert low(any_db, pid) == [{"product_id": pid, "available": 5, "threshold": 5}]
    assert figures(any_db, pid)[-1] == (5, 0, 5, "adjust")


# --- configuration and the API -------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "five", "2.5", "1000001"])
def test_bad_threshold_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str,
                                         db: Database) -> None:
    monkeypatch.setenv("CATALOG_LOW_STOCK_THRESHOLD", value)
    with pytest.raises(ConfigError, match="CATALOG_LOW_STOCK_THRESHOLD"):
        CatalogConfig.parse()
    with pytest.raises(ConfigError, match="CATALOG_LOW_STOCK_THRESHOLD"):
        catalog_service(db)


def test_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    monkeypatch.delenv("CATALOG_LOW_STOCK_THRESHOLD", raising=False)
    assert catalog_service(db).low_stock_threshold == 5
    monkeypatch.setenv("CATALOG_LOW_STOCK_THRESHOLD", "0")
    assert catalog_service(db).low_stock_threshold == 0


def test_api_adjustment_publishes(client: Any, db: Database, seeded: dict[str, Any],
                                  auth: Callable[..., dict[str, str]]) -> None:
    pid = seeded["spare"]["id"]  # 5 on hand
    start = len(published(db))
    response = client.post(f"/v1/products/{pid}/stock/adjustments",
                           json={"delta": 7, "reason": "goods receipt"}, headers=auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    [event] = published(db)[start:]
    assert dict(event.data) == {"product_id": pid, "on_hand": 12, "reserved": 0,
                                "available": 12, "reason": "adjust"}


# --- relayed to the broker -----------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_relay_publishes_the_catalog_events(kind: str, tmp_path: Path,
                                                db: Database) -> None:
    """``catalog_messaging`` (what ``create_asgi`` starts) carries committed events to a
    queue bound as notifications binds it, on the embedded broker and on RabbitMQ."""
    with temporary_broker(kind, tmp_path) as broker:
        probe = Subscription(unique("probe"), ("catalog.#",), max_attempts=1)
        broker.declare(probe)
        lock = LeaderLock("catalog-messaging", db.url, var_dir=tmp_path / "var")
        messaging = catalog_messaging(db, broker=broker, lock=lock,
                                      registry=CollectorRegistry(), lead_interval=0.1)
        service = catalog_service(db, TTLCache(), low_stock_threshold=5)
        pid = new_product(service)
        with messaging:
            service.set_stock(pid, 6)
            service.adjust_stock(pid, -1)
            got: list[Envelope] = []

            def arrived() -> bool:
                with broker.channel() as channel:
                    queue = Queue(probe.queue, no_declare=True)(channel)
                    while (message := queue.get(no_ack=False)) is not None:
                        got.append(Envelope.from_json(message.body))
                        message.ack()
                return len(got) >= 3

            wait_until(arrived, timeout=15, interval=0.05, what="3 catalog events")
    assert [e.routing_key for e in got] == [
        "catalog.StockChanged", "catalog.StockChanged", "catalog.LowStock"]
    assert got == published(db)
