"""The catalog's use cases against in-memory ports: no database, no SQLAlchemy session.

They prove the service layer depends only on ``UnitOfWork[CatalogRepository]`` (and a
cache): the rules, the idempotent replay and the conflict handling all run on the fakes of
``catalog_fakes.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from catalog_fakes import InMemoryCatalogRepository, InMemoryIdempotencyKeys, InMemoryUnitOfWork

from charter.cache import TTLCache
from charter.problems import Conflict, NotFound, Unprocessable
from charter.unit_of_work import UnitOfWork, WriteConflict
from services.catalog.domain import ReservationStatus
from services.catalog.ports import CatalogRepository
from services.catalog.services import CatalogService


@pytest.fixture
def uow() -> InMemoryUnitOfWork:
    return InMemoryUnitOfWork()


@pytest.fixture
def service(uow: InMemoryUnitOfWork) -> CatalogService:
    ports: UnitOfWork[CatalogRepository] = uow  # checked by mypy: the fake fits the port
    return CatalogService(ports, TTLCache())


def stocked_product(service: CatalogService, on_hand: int) -> int:
    category = service.create_category(slug="tea", name="Tea")
    product = service.create_product(sku="TEA-0001", name="Sencha", category_id=category.id,
                                      price=890, currency="EUR")
    service.set_stock(product.id, on_hand)
    return product.id


def test_reserve_commit_and_replay_in_memory(service: CatalogService,
                                             uow: InMemoryUnitOfWork) -> None:
    pid = stocked_product(service, 5)
    items = [{"product_id": pid, "quantity": 2}]

    first = service.create_reservation("key-1", "order-1", items)
    assert (first.status, first.replayed) == (201, False)
    assert first.body.status is ReservationStatus.HELD
    again = service.create_reservation("key-1", "order-1", items)
    assert again.replayed and again.body == first.body
    assert uow.state.stock[pid].reserved == 2  # reserved once, not twice

    with pytest.raises(Unprocessable):  # the same key for another request
        service.create_reservation("key-1", "order-1", [{"product_id": pid, "quantity": 1}])

    committed = service.commit_reservation("key-2", "order-1")
    assert committed.body.status is ReservationStatus.COMMITTED
    level = service.get_stock(pid)
    assert (level.on_hand, level.reserved, level.available) == (3, 0, 3)


def test_refused_reservation_changes_nothing(service: CatalogService,
                                            uow: InMemoryUnitOfWork) -> None:
    pid = stocked_product(service, 1)
    before = (uow.state.stock[pid].reserved, dict(uow.state.keys))
    with pytest.raises(Conflict) as refused:
        service.create_reservation("key-1", "order-1", [{"product_id": pid, "quantity": 2}])
    assert refused.value.title == "Insufficient stock"
    assert (uow.state.stock[pid].reserved, dict(uow.state.keys)) == before  # rolled back
    with pytest.raises(NotFound):
        service.get_reservation("order-1")


def test_update_product_goes_through_the_repository(service: CatalogService) -> None:
    pid = stocked_product(service, 0)
    service.update_product(pid, name="Gyokuro", price=1290)
    product = service.get_product(pid)
    assert (product.name, product.price.amount) == ("Gyokuro", 1290)
    with pytest.raises(Unprocessable):
        service.update_product(pid, category_id=999)


def test_lost_write_race_is_409(service: CatalogService, uow: InMemoryUnitOfWork,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A category insert lost to a concurrent writer (as a unique index refuses it)."""

    def add_category(self: Any, slug: str, name: str, description: str) -> Any:
        raise WriteConflict("categories.slug")

    monkeypatch.setattr(InMemoryCatalogRepository, "add_category", add_category)
    with pytest.raises(Conflict, match="conflicts with existing data"):
        service.create_category(slug="tea", name="Tea")
    assert uow.state.categories == {}


def test_lost_key_race_replays_the_winner(service: CatalogService, uow: InMemoryUnitOfWork,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent first use of the key commits between lookup and claim: replay it."""
    pid = stocked_product(service, 5)
    items = [{"product_id": pid, "quantity": 1}]
    winner = service.create_reservation("key-1", "order-1", items)
    stored = dict(uow.state.keys)
    uow.state.keys.clear()  # our lookup misses the winner ...

    def claim(self: Any, scope: str, key: str, fp: str) -> None:
        uow.state.keys.update(stored)  # ... which commits before our claim
        raise WriteConflict("idempotency key claimed concurrently")

    monkeypatch.setattr(InMemoryIdempotencyKeys, "claim", claim)
    outcome = service.create_reservation("key-1", "order-1", items)
    assert outcome.replayed and outcome.body == winner.body
    assert uow.state.stock[pid].reserved == 1
