"""Concurrent points operations never overdraw or double-count (SQLite and PostgreSQL).

Each check is a function of the service on a migrated database, run on both backends (the
shared ``any_database_url`` fixture); threads are released together by ``run_threads``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from charter.db import Database
from charter.problems import Conflict, NotFound, Unprocessable
from charter.security.principal import Principal
from services.loyalty.app import loyalty_service
from services.loyalty.services import LoyaltyService, Result
from tests.support.plugin import run_threads

ORDERS = Principal("orders", "service", frozenset({"loyalty:write"}))


@pytest.fixture
def service(any_database_url: str,
            migrated_db: Callable[[str, str], Database]) -> LoyaltyService:
    """The service on a migrated database of each backend (disposed by ``migrated_db``)."""
    return loyalty_service(migrated_db("loyalty", any_database_url), points_per_unit=1)


def check_redemptions_never_overdraw(service: LoyaltyService, threads: int = 20) -> None:
    """20 redemptions of 30 points race for a balance of 100: exactly 3 succeed."""
    service.award(ORDERS, "alice", "ord-seed", points=100)
    results = run_threads(threads, lambda i: service.redeem(ORDERS, f"ord-{i}", 30, "alice"))
    won = [r for r in results if isinstance(r, Result)]
    lost = [r for r in results if not isinstance(r, Result)]
    assert len(won) == 3, results
    assert all(isinstance(e, Unprocessable) and e.title == "Insufficient points"
               for e in lost), lost
    assert service.balance(ORDERS, "alice").balance == 10
    assert sorted(r.value.entry.balance_after for r in won) == [10, 40, 70]
    assert service.inconsistent_accounts() == []


def check_same_order_awarded_once(service: LoyaltyService, threads: int = 12) -> None:
    """Concurrent identical awards of one order (a new customer): one credit, same answer."""
    results = run_threads(threads, lambda i: service.award(
        ORDERS, "newcomer", "ord-1", amount=5000, currency="EUR"))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sum(1 for r in results if r.created) == 1
    assert len({repr(r.value) for r in results}) == 1
    assert service.balance(ORDERS, "newcomer").balance == 50
    assert service.history(ORDERS, "newcomer").total == 1
    assert service.inconsistent_accounts() == []


def check_same_order_for_different_customers(service: LoyaltyService, threads: int = 10) -> None:
    """One order awarded concurrently to different customers: exactly one wins, others 409."""
    results = run_threads(threads, lambda i: service.award(
        ORDERS, f"customer-{i}", "ord-shared", points=10))
    won = [r for r in results if isinstance(r, Result)]
    lost = [r for r in results if not isinstance(r, Result)]
    assert len(won) == 1, results
    assert all(isinstance(e, Conflict) for e in lost), lost
    balances = [service.balance(ORDERS, f"customer-{i}").balance for i in range(threads)]
    assert sorted(balances) == [0] * (threads - 1) + [10]
    assert service.inconsistent_accounts() == []


def check_mixed_operations_keep_the_ledger_consistent(service: LoyaltyService,
                                                      threads: int = 16) -> None:
    """Awards, redemptions and reversals of one customer interleave; the books balance."""
    for i in range(4):
        service.award(ORDERS, "alice", f"seed-{i}", points=50)

    def work(i: int) -> Any:
        kind = i % 4
        if kind == 0:
            return service.award(ORDERS, "alice", f"award-{i}", points=20)
        if kind == 1:
            return service.redeem(ORDERS, f"redeem-{i}", 45, "alice")
        if kind == 2:
            return service.reverse_award(ORDERS, f"seed-{i % 4 + (i // 4) % 2}")
        return service.reverse_redemption(ORDERS, f"redeem-{i - 2}", "alice")

    results = run_threads(threads, work)
    for r in results:
        assert isinstance(r, Result | Unprocessable | NotFound), r
    history = service.history(ORDERS, "alice", page_size=100).items
    total = sum(e.points for e in history)
    assert total == service.balance(ORDERS, "alice").balance >= 0
    assert all(e.balance_after >= 0 for e in history)
    assert service.inconsistent_accounts() == []


CHECKS = [check_redemptions_never_overdraw, check_same_order_awarded_once,
          check_same_order_for_different_customers,
          check_mixed_operations_keep_the_ledger_consistent]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_races(service: LoyaltyService, check: Callable[[LoyaltyService], None]) -> None:
    check(service)
