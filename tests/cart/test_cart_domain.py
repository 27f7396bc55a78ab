"""The cart's pure rules and arithmetic."""

from __future__ import annotations

import pytest

from services.cart.domain import (
    MAX_LINES,
    MAX_QUANTITY,
    Availability,
    Cart,
    CartItem,
    CurrencyMismatch,
    ItemNotInCart,
    QuantityError,
    TooManyLines,
    availability_for,
    check_quantity,
)


def item(
    product_id: int = 1, quantity: int = 1, price: int = 1000, currency: str = "EUR"
) -> CartItem:
    return CartItem(
        product_id=product_id,
        sku=f"SKU-{product_id}",
        name=f"Product {product_id}",
        unit_price=price,
        currency=currency,
        quantity=quantity,
    )


def test_empty_cart_has_no_currency_and_zero_totals() -> None:
    cart = Cart("alice")
    assert cart.items == []
    assert cart.currency is None
    assert cart.total == 0
    assert cart.item_count == 0


def test_line_total_and_cart_total_in_minor_units() -> None:
    cart = Cart("alice")
    cart.add(item(1, quantity=3, price=1299))
    cart.add(item(2, quantity=1, price=1))
    assert cart.find(1) is not None and cart.find(1).line_total == 3897  # type: ignore[union-attr]
    assert cart.total == 3898
    assert cart.item_count == 4
    assert cart.currency == "EUR"


def test_adding_an_existing_product_increases_its_quantity() -> None:
    cart = Cart("alice")
    cart.add(item(1, quantity=2))
    line = cart.add(item(1, quantity=5))
    assert line.quantity == 7
    assert len(cart.items) == 1


def test_adding_keeps_first_added_order() -> None:
    cart = Cart("alice")
    for pid in (3, 1, 2):
        cart.add(item(pid))
    cart.add(item(1))
    assert [i.product_id for i in cart.items] == [3, 1, 2]


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1, 10**9])
def test_quantity_out_of_range_is_refused(quantity: int) -> None:
    with pytest.raises(QuantityError):
        check_quantity(quantity)
    with pytest.raises(QuantityError):
        item(quantity=quantity)


@pytest.mark.parametrize("quantity", [True, 2.0, "2"])
def test_quantity_must_be_an_int(quantity: object) -> None:
    with pytest.raises(QuantityError):
        check_quantity(quantity)  # type: ignore[arg-type]


def test_merged_quantity_cannot_exceed_the_maximum() -> None:
    cart = Cart("alice")
    cart.add(item(1, quantity=MAX_QUANTITY - 1))
    cart.add(item(1, quantity=1))
    with pytest.raises(QuantityError):
        cart.add(item(1, quantity=1))
    assert cart.find(1).quantity == MAX_QUANTITY  # type: ignore[union-attr]


def test_a_cart_holds_at_most_max_lines_products() -> None:
    cart = Cart("alice")
    for pid in range(1, MAX_LINES + 1):
        cart.add(item(pid))
    with pytest.raises(TooManyLines):
        cart.add(item(MAX_LINES + 1))
    cart.add(item(1))  # an existing line can still grow
    assert cart.find(1).quantity == 2  # type: ignore[union-attr]


def test_one_currency_per_cart() -> None:
    cart = Cart("alice")
    cart.add(item(1, currency="EUR"))
    with pytest.raises(CurrencyMismatch):
        cart.add(item(2, currency="USD"))
    cart.add(item(1, currency="USD"))  # the only line may be re-priced in a new currency
    assert cart.currency == "USD"


def test_set_quantity_replaces_and_validates() -> None:
    cart = Cart("alice")
    cart.add(item(1, quantity=5))
    assert cart.set_quantity(1, 2).quantity == 2
    with pytest.raises(QuantityError):
        cart.set_quantity(1, 0)
    with pytest.raises(ItemNotInCart):
        cart.set_quantity(99, 1)


def test_remove_and_clear() -> None:
    cart = Cart("alice")
    cart.add(item(1))
    cart.add(item(2))
    cart.remove(1)
    assert [i.product_id for i in cart.items] == [2]
    with pytest.raises(ItemNotInCart):
        cart.remove(1)
    cart.clear()
    assert cart.items == []


def test_reprice_keeps_quantity() -> None:
    cart = Cart("alice")
    cart.add(item(1, quantity=4, price=100))
    cart.reprice(item(1, quantity=1, price=250))
    line = cart.find(1)
    assert line is not None and line.quantity == 4 and line.unit_price == 250
    assert cart.total == 1000
    with pytest.raises(ItemNotInCart):
        cart.reprice(item(2))


def test_negative_prices_are_refused() -> None:
    with pytest.raises(Exception, match="negative"):
        item(price=-1)


@pytest.mark.parametrize(
    ("active", "available", "quantity", "expected"),
    [
        (True, 10, 10, Availability.IN_STOCK),
        (True, 10, 11, Availability.INSUFFICIENT_STOCK),
        (True, 0, 1, Availability.OUT_OF_STOCK),
        (False, 10, 1, Availability.UNAVAILABLE),
        (True, None, 1, Availability.UNKNOWN),
    ],
)
def test_availability(
    active: bool, available: int | None, quantity: int, expected: Availability
) -> None:
    assert availability_for(active, available, quantity) is expected
