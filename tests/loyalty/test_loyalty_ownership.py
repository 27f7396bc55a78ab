"""Ownership is decided by the service layer, whatever adapter calls it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charter.db import Database
from charter.problems import Forbidden, NotFound, Unprocessable
from charter.security.principal import Principal
from services.loyalty.app import loyalty_service
from services.loyalty.services import LoyaltyService

ORDERS = Principal("orders", "service", frozenset())
ALICE = Principal("alice", "customer", frozenset())
BOB = Principal("bob", "customer", frozenset())


@pytest.fixture
def service(db: Database) -> Iterator[LoyaltyService]:
    svc = loyalty_service(db, points_per_unit=1)
    svc.award(ORDERS, "alice", "ord-1", points=100)
    svc.redeem(ALICE, "ord-2", 10)
    yield svc


def test_customers_act_only_on_their_own_points(service: LoyaltyService) -> None:
    assert service.balance(ALICE).balance == 90
    assert service.balance(ALICE, "alice").balance == 90
    for read in (lambda: service.balance(BOB, "alice"),
                 lambda: service.history(BOB, "alice"),
                 lambda: service.redeem(BOB, "ord-3", 1, "alice"),
                 lambda: service.get_redemption(BOB, "ord-2", "alice")):
        with pytest.raises(Forbidden):
            read()
    assert service.balance(ALICE).balance == 90


def test_someone_elses_entries_are_not_found(service: LoyaltyService) -> None:
    with pytest.raises(NotFound):
        service.get_award(BOB, "ord-1")
    with pytest.raises(NotFound):
        service.get_redemption(BOB, "ord-2")
    assert service.get_award(ALICE, "ord-1").entry.customer_id == "alice"
    assert service.get_redemption(ORDERS, "ord-2").points == 10


def test_awards_and_reversals_are_for_staff_and_services(service: LoyaltyService) -> None:
    for change in (lambda: service.award(ALICE, "alice", "ord-9", points=5),
                   lambda: service.reverse_award(ALICE, "ord-1"),
                   lambda: service.reverse_redemption(ALICE, "ord-2")):
        with pytest.raises(Forbidden):
            change()
    with pytest.raises(Unprocessable):  # a service must say whose points it spends
        service.redeem(ORDERS, "ord-3", 1)
    assert service.balance(ALICE).balance == 90
