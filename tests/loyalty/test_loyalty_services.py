"""Unit tests of the loyalty use cases against the in-memory port (no database, no HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from loyalty_fakes import InMemoryLoyaltyRepository, InMemoryLoyaltyUnitOfWork

from charter.problems import Conflict, NotFound, Unprocessable
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork, WriteConflict
from services.loyalty.domain import Entry, EntryType
from services.loyalty.ports import LoyaltyRepository
from services.loyalty.services import LoyaltyService

ORDERS = Principal("orders", "service", frozenset())
ALICE = Principal("alice", "customer", frozenset())
BOB = Principal("bob", "customer", frozenset())


@pytest.fixture
def uow() -> InMemoryLoyaltyUnitOfWork:
    return InMemoryLoyaltyUnitOfWork()


@pytest.fixture
def service(uow: InMemoryLoyaltyUnitOfWork) -> LoyaltyService:
    port: UnitOfWork[LoyaltyRepository] = uow  # the fake satisfies the port
    return LoyaltyService(port, points_per_unit=10)


def test_award_uses_the_points_rule_and_replays(service: LoyaltyService,
                                                 uow: InMemoryLoyaltyUnitOfWork) -> None:
    first = service.award(ORDERS, "alice", "ord-1", amount=1999, currency="EUR")
    assert first.created and first.value.entry.points == 190  # 19 whole EUR x 10
    again = service.award(ORDERS, "alice", "ord-1", amount=1999, currency="EUR")
    assert not again.created and again.value == first.value
    with pytest.raises(Conflict):
        service.award(ORDERS, "alice", "ord-1", amount=2999, currency="EUR")
    assert service.balance(ALICE).balance == 190
    assert service.inconsistent_accounts() == []
    assert uow.commits == 2  # the refused award was rolled back
    assert uow.rollbacks == 1


def test_a_refused_redemption_changes_nothing(service: LoyaltyService,
                                              uow: InMemoryLoyaltyUnitOfWork) -> None:
    service.award(ORDERS, "alice", "ord-1", points=50)
    with pytest.raises(Unprocessable) as info:
        service.redeem(ALICE, "ord-2", 60)
    assert info.value.title == "Insufficient points"
    assert service.balance(ALICE).balance == 50
    assert service.history(ALICE).total == 1
    with pytest.raises(NotFound):
        service.get_redemption(ALICE, "ord-2")


def test_redemptions_are_keyed_per_customer(service: LoyaltyService) -> None:
    service.award(ORDERS, "alice", "ord-1", points=50)
    service.award(ORDERS, "bob", "ord-9", points=50)
    alices = service.redeem(ALICE, "ord-2", 20)
    # bob uses alice's order id: answered like a fresh id, only bob's points move
    bobs = service.redeem(BOB, "ord-2", 5)
    assert alices.created and bobs.created
    assert service.balance(ALICE).balance == 30 and service.balance(BOB).balance == 45
    assert service.get_redemption(BOB, "ord-2").points == 5
    with pytest.raises(Conflict):  # staff must say whose redemption they mean
        service.get_redemption(ORDERS, "ord-2")
    reversed_ = service.reverse_redemption(ORDERS, "ord-2", "alice")
    assert reversed_.created and service.balance(ALICE).balance == 50
    assert service.inconsistent_accounts() == []


class FlakyUnitOfWork(InMemoryLoyaltyUnitOfWork):
    """Loses the race on recording an entry ``losses`` times, as a unique index would."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses

    @contextmanager
    def write(self) -> Iterator[InMemoryLoyaltyRepository]:
        with super().write() as repo:
            if self.losses:
                self.losses -= 1
                repo.add = self._conflict  # type: ignore[method-assign]
            yield repo

    @staticmethod
    def _conflict(entry: Entry) -> Entry:
        raise WriteConflict(f"{entry.type} recorded concurrently")


def test_a_lost_race_is_retried_in_a_new_unit_of_work() -> None:
    uow = FlakyUnitOfWork(losses=2)
    service = LoyaltyService(uow)
    result = service.award(ORDERS, "alice", "ord-1", points=7)
    assert result.created and result.value.entry.type is EntryType.AWARD
    assert (uow.rollbacks, uow.commits) == (2, 1)
    assert service.balance(ALICE).balance == 7


def test_a_write_that_keeps_losing_is_409_and_leaves_nothing() -> None:
    uow = FlakyUnitOfWork(losses=LoyaltyService.RETRIES)
    service = LoyaltyService(uow)
    with pytest.raises(Conflict):
        service.award(ORDERS, "alice", "ord-1", points=7)
    assert uow.rollbacks == LoyaltyService.RETRIES and uow.commits == 0
    assert service.balance(ALICE).balance == 0
    assert service.history(ORDERS, "alice").total == 0
