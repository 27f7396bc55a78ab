"""Concurrent reservations never oversell (SQLite here; PostgreSQL when it is reachable).

Each check is a function of a database URL so it can run on any backend; the PostgreSQL
variants use the shared ``postgres_url`` fixture (a fresh database per test).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalog_support import migrated, seed_small

from charter.cache import TTLCache
from charter.db import SqlUnitOfWork
from charter.problems import Conflict, Problem
from services.catalog.app import catalog_service
from services.catalog.services import CatalogService


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def new_service(url: str) -> tuple[CatalogService, dict[str, Any]]:
    service = catalog_service(migrated(url), TTLCache())
    return service, seed_small(service)


def dispose(service: CatalogService) -> None:
    """Close the pooled connections of the service's database."""
    assert isinstance(service.uow, SqlUnitOfWork)
    service.uow.db.dispose()


def check_last_units(url: str, threads: int = 20) -> None:
    """``threads`` clients race for the last 5 units: exactly 5 get one."""
    service, seeded = new_service(url)
    spare = seeded["spare"]["id"]
    assert service.get_stock(spare).available == 5
    try:
        results = run_threads(threads, lambda i: service.create_reservation(
            f"race-key-{i:04d}", f"race-order-{i}", [{"product_id": spare, "quantity": 1}]))
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 5, results
        assert all(isinstance(e, Conflict) and e.title == "Insufficient stock" for e in lost), lost
        stock = service.get_stock(spare)
        assert (stock.on_hand, stock.reserved, stock.available) == (5, 5, 0)
    finally:
        dispose(service)


def check_crossing_multi_item_orders(url: str, threads: int = 20) -> None:
    """Orders listing the same two products in opposite orders: no deadlock, no oversell."""
    service, seeded = new_service(url)
    a, b = seeded["spare"]["id"], seeded["product"]["id"]  # 5 and 10 available
    try:
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
    finally:
        dispose(service)


def check_same_key_races(url: str, threads: int = 10) -> None:
    """Concurrent first uses of one Idempotency-Key reserve once and all get one answer."""
    service, seeded = new_service(url)
    spare = seeded["spare"]["id"]
    try:
        results = run_threads(threads, lambda i: service.create_reservation(
            "same-key-0001", "same-order", [{"product_id": spare, "quantity": 2}]))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert sum(1 for r in results if not r.replayed) == 1
        assert len({repr(r.body) for r in results}) == 1
        assert service.get_stock(spare).reserved == 2
    finally:
        dispose(service)


def check_commit_release_race(url: str, threads: int = 10) -> None:
    """Commits and releases of one reservation race: exactly one kind wins, stock stays sane."""
    service, seeded = new_service(url)
    held = seeded["held_product"]["id"]
    try:
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
    finally:
        dispose(service)


CHECKS = [check_last_units, check_crossing_multi_item_orders, check_same_key_races,
          check_commit_release_race]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_sqlite(tmp_path: Path, check: Callable[[str], None]) -> None:
    check(f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_postgres(postgres_url: str, check: Callable[[str], None]) -> None:
    check(postgres_url)
