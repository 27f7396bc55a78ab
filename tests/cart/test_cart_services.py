"""The cart's use cases as pure unit tests: the service layer against in-memory fakes of
its ports (repository behind a unit of work, catalog), no database and no SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cart_fakes import InMemoryCartUnitOfWork, InMemoryCatalog

from charter.problems import Conflict, NotFound, Unprocessable
from services.cart.domain import Availability, Pricing
from services.cart.services import CartService


@pytest.fixture
def uow() -> InMemoryCartUnitOfWork:
    return InMemoryCartUnitOfWork()


@pytest.fixture
def catalog() -> InMemoryCatalog:
    fake = InMemoryCatalog()
    fake.put(1, name="Beans", price=1299, available=10)
    fake.put(2, name="Grinder", price=4999, available=3)
    return fake


@pytest.fixture
def service(uow: InMemoryCartUnitOfWork, catalog: InMemoryCatalog) -> CartService:
    return CartService(uow, catalog)


def stored(uow: InMemoryCartUnitOfWork, user: str) -> list[tuple[int, int, int]]:
    """(product, quantity, unit price) of every stored line, as committed."""
    return [(i.product_id, i.quantity, i.unit_price) for i in uow.carts[user].items]


def test_add_commits_one_unit_of_work_and_merges_lines(
    service: CartService, uow: InMemoryCartUnitOfWork
) -> None:
    first = service.add_item("alice", 1, 2)
    again = service.add_item("alice", 1, 3)
    assert (first.created, again.created) == (True, False)
    assert stored(uow, "alice") == [(1, 5, 1299)]
    assert again.cart.total == 5 * 1299
    assert again.cart.find(1).availability is Availability.IN_STOCK  # type: ignore[union-attr]
    assert uow.commits == 2 and uow.rollbacks == 0


def test_a_refused_add_rolls_back_and_stores_nothing(
    service: CartService, uow: InMemoryCartUnitOfWork
) -> None:
    service.add_item("alice", 2, 2)
    with pytest.raises(Conflict) as exc:
        service.add_item("alice", 2, 2)  # 4 wanted, 3 available
    assert exc.value.extensions["available"] == 3
    assert stored(uow, "alice") == [(2, 2, 4999)]
    assert uow.rollbacks == 1


def test_view_remembers_new_prices_and_degrades_to_stale(
    service: CartService, uow: InMemoryCartUnitOfWork, catalog: InMemoryCatalog
) -> None:
    service.add_item("alice", 1, 1)
    catalog.put(1, name="Beans", price=1399, available=10)
    assert service.view("alice").total == 1399
    assert stored(uow, "alice") == [(1, 1, 1399)]

    catalog.down = True
    commits = uow.commits
    cart = service.view("alice")
    assert cart.pricing is Pricing.STALE and cart.total == 1399  # last known price
    assert uow.commits == commits  # nothing to remember


def test_rules_broken_inside_a_unit_of_work_are_problems(
    service: CartService, uow: InMemoryCartUnitOfWork
) -> None:
    with pytest.raises(NotFound):
        service.remove_item("alice", 1)
    with pytest.raises(Unprocessable):
        service.add_item("alice", 1, 100)
    service.add_item("alice", 1, 1)
    service.set_quantity("alice", 1, 4)
    service.clear("alice")
    assert stored(uow, "alice") == []


def test_the_service_layer_runs_without_sqlalchemy() -> None:
    code = (
        "import sys, services.cart.services; "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
