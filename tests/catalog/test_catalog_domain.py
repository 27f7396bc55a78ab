"""Pure domain rules: available stock, all-or-nothing reservations, state transitions."""

from __future__ import annotations

import pytest

from services.catalog import domain
from services.catalog.domain import (
    InsufficientStock,
    InvalidPrice,
    InvalidQuantity,
    InvalidTransition,
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockBelowReserved,
    StockLevel,
)


def test_available_is_on_hand_minus_reserved() -> None:
    level = StockLevel(1, on_hand=10, reserved=3)
    assert level.available == 7
    level.reserve(7)
    assert (level.on_hand, level.reserved, level.available) == (10, 10, 0)


def test_cannot_reserve_more_than_available() -> None:
    level = StockLevel(1, on_hand=5, reserved=4)
    with pytest.raises(InsufficientStock) as info:
        level.reserve(2)
    assert info.value.shortages == [domain.Shortage(1, 2, 1)]
    assert level.reserved == 4


@pytest.mark.parametrize("quantity", [0, -1])
def test_quantity_must_be_positive(quantity: int) -> None:
    with pytest.raises(InvalidQuantity):
        StockLevel(1, 10).reserve(quantity)
    with pytest.raises(InvalidQuantity):
        ReservationLine(1, quantity)


def test_invalid_stock_level_is_refused() -> None:
    with pytest.raises(StockBelowReserved):
        StockLevel(1, on_hand=1, reserved=2)
    with pytest.raises(StockBelowReserved):
        StockLevel(1, on_hand=-1)


def test_commit_takes_units_out_of_on_hand_and_reserved() -> None:
    level = StockLevel(1, on_hand=10, reserved=4)
    level.commit(3)
    assert (level.on_hand, level.reserved, level.available) == (7, 1, 6)
    with pytest.raises(StockBelowReserved):
        level.commit(2)


def test_release_frees_reserved_units() -> None:
    level = StockLevel(1, on_hand=10, reserved=4)
    level.release(4)
    assert (level.on_hand, level.reserved, level.available) == (10, 0, 10)
    with pytest.raises(StockBelowReserved):
        level.release(1)


def test_set_and_adjust_never_go_below_reserved() -> None:
    level = StockLevel(1, on_hand=10, reserved=4)
    level.set_on_hand(4)
    assert level.available == 0
    with pytest.raises(StockBelowReserved):
        level.set_on_hand(3)
    level.adjust(+6)
    assert level.on_hand == 10
    with pytest.raises(StockBelowReserved):
        level.adjust(-7)
    with pytest.raises(InvalidQuantity):
        level.adjust(0)
    with pytest.raises(InvalidQuantity):
        level.adjust(domain.MAX_ON_HAND)
    assert level.on_hand == 10


def test_reserve_all_is_all_or_nothing() -> None:
    levels = {1: StockLevel(1, 10), 2: StockLevel(2, 1), 3: StockLevel(3, 0)}
    lines = domain.normalise_lines([(1, 5), (2, 2), (3, 1)])
    with pytest.raises(InsufficientStock) as info:
        domain.reserve_all(levels, lines)
    assert [(s.product_id, s.requested, s.available) for s in info.value.shortages] == [
        (2, 2, 1), (3, 1, 0)]
    assert [lv.reserved for lv in levels.values()] == [0, 0, 0]

    domain.reserve_all(levels, domain.normalise_lines([(2, 1), (1, 5)]))
    assert (levels[1].reserved, levels[2].reserved) == (5, 1)


def test_reserve_all_treats_a_missing_stock_level_as_zero() -> None:
    with pytest.raises(InsufficientStock):
        domain.reserve_all({}, [ReservationLine(9, 1)])


def test_normalise_lines_sorts_and_refuses_duplicates() -> None:
    assert domain.normalise_lines([(3, 1), (1, 2)]) == [ReservationLine(1, 2),
                                                         ReservationLine(3, 1)]
    with pytest.raises(InvalidQuantity):
        domain.normalise_lines([(1, 1), (1, 2)])
    with pytest.raises(InvalidQuantity):
        domain.normalise_lines([])


def test_commit_all_and_release_all() -> None:
    levels = {1: StockLevel(1, 10, 3), 2: StockLevel(2, 5, 5)}
    lines = [ReservationLine(1, 3), ReservationLine(2, 5)]
    domain.commit_all(levels, lines)
    assert [(lv.on_hand, lv.reserved) for lv in levels.values()] == [(7, 0), (0, 0)]
    levels = {1: StockLevel(1, 10, 3)}
    domain.release_all(levels, [ReservationLine(1, 3)])
    assert levels[1].available == 10


def test_reservation_transitions() -> None:
    held = Reservation("o-1", [ReservationLine(1, 1)])
    assert held.status == ReservationStatus.HELD
    assert held.commit() is True
    assert held.status == ReservationStatus.COMMITTED
    assert held.commit() is False  # repeating the same transition changes nothing
    with pytest.raises(InvalidTransition):
        held.release()

    other = Reservation("o-2", [ReservationLine(1, 1)])
    assert other.release() is True
    assert other.release() is False
    with pytest.raises(InvalidTransition):
        other.commit()
    assert other.status == ReservationStatus.RELEASED


@pytest.mark.parametrize(("amount", "currency"), [(-1, "EUR"), (100, "eur"), (100, "EURO"),
                                                  (100, "")])
def test_price_validation(amount: int, currency: str) -> None:
    with pytest.raises(InvalidPrice):
        domain.Price(amount, currency)


def test_price_accepts_minor_units() -> None:
    assert domain.Price(0, "EUR").amount == 0
    assert domain.Price(1299, "USD").currency == "USD"


def test_product_change_checks_the_new_price_before_changing_anything() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 24, tzinfo=UTC)
    product = domain.Product(1, "SKU-1", "Beans", "", 1, domain.Price(100, "EUR"), True,
                             now, now)
    with pytest.raises(domain.InvalidPrice):
        product.change(name="Other", currency="euro")
    assert (product.name, product.price) == ("Beans", domain.Price(100, "EUR"))
    product.change(name="Other", price=250, active=False)
    assert (product.name, product.price, product.active) == (
        "Other", domain.Price(250, "EUR"), False)
