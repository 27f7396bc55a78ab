"""Concurrent reservations never oversell, on SQLite and on PostgreSQL.

Each check is a function of a migrated database so it runs on both backends (the shared
``any_database_url`` fixture); threads are released together by ``run_threads``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from catalog_support import seed_small

from charter.cache import TTLCache
from charter.db import Database
from charter.problems import Conflict, Problem
from services.catalog.app import catalog_service
from services.catalog.services import CatalogService
from tests.support.plugin import run_threads


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    """A migrated catalog database on each backend (disposed by ``migrated_db``)."""
    return migrated_db("catalog", any_database_url)


def new_service(db: Database) -> tuple[CatalogService, dict[str, Any]]:
    service = catalog_service(db, TTLCache())
    return service, seed_small(service)


def check_last_units(db: Database, threads: int = 20) -> None:
    """``threads`` clients race for the last 5 units: exactly 5 get one."""
    service, seeded = new_service(db)
    spare = seeded["spare"]["id"]
    assert service.get_stock(spare).available == 5
    results = run_threads(threads, lambda i: service.create_reservation(
        f"race-key-{i:04d}", f"race-order-{i}", [{"product_id": spare, "quantity": 1}]))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 5, results
    assert all(isinstance(e, Conflict) and e.title == "Insufficient stock" for e in lost), lost
    stock = service.get_stock(spare)
    assert (stock.on_hand, stock.reserved, stock.available) == (5, 5, 0)


def check_crossing_multi_item_orders(db: Database, threads: int = 20) -> None:
    """Orders listing the same two products in opposite orders: no deadlock, no oversell."""
    service, seeded = new_service(db)
    a, b = seeded["spare"]["id"], seeded["product"]["id"]  # 5 and 10 available

    def work(i: int) -> Any:
        items = [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 2}]
        random.Random(i).shuffle(items)
        return service.create_reservation(f"cross-key-{i:04d}", f"cross-{i}", items)

    results = run_threads(threads, work)
    won = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 5, results
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert service.get_stock(a).reserved == 5
    assert service.get_stock(b).reserved == 10


def check_same_key_races(db: Database, threads: int = 10) -> None:
    """Concurrent first uses of one Idempotency-Key reserve once and all get one answer."""
    service, seeded = new_service(db)
    spare = seeded["spare"]["id"]
    results = run_threads(threads, lambda i: service.create_reservation(
        "same-key-0001", "same-order", [{"product_id": spare, "quantity": 2}]))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sum(1 for r in results if not r.replayed) == 1
    assert len({repr(r.body) for r in results}) == 1
    assert service.get_stock(spare).reserved == 2


def check_commit_release_race(db: Database, threads: int = 10) -> None:
    """Commits and releases of one reservation race: exactly one kind wins, stock stays sane."""
    service, seeded = new_service(db)
    held = seeded["held_product"]["id"]

    def work(i: int) -> Any:
        if i % 2:
            return service.commit_reservation(f"commit-{i:04d}", "order-held")
        return service.release_reservation(f"release-{i:04d}", "order-held")

    results = run_threads(threads, work)
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, Problem) and e.status == 409 for e in errors), errors
    statuses = {str(r.body.status) for r in ok}
    assert len(statuses) == 1
    stock = service.get_stock(held)
    expected = (8, 0) if statuses == {"committed"} else (10, 0)
    assert (stock.on_hand, stock.reserved) == expected


CHECKS = [check_last_units, check_crossing_multi_item_orders, check_same_key_races,
          check_commit_release_race]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_races(any_db: Database, check: Callable[[Database], None]) -> None:
    check(any_db)
