"""The order aggregate: lines, totals and every transition of the state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.orders import domain
from services.orders.domain import (
    TRANSITIONS,
    FollowUp,
    InvalidOrder,
    InvalidTransition,
    Order,
    OrderLine,
    OrderStatus,
    RejectionCode,
    Source,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def line(product_id: int = 1, price: int = 250, quantity: int = 2,
         currency: str = "EUR") -> OrderLine:
    return OrderLine(product_id, f"SKU-{product_id}", f"P{product_id}", price, currency, quantity)


def order(*lines: OrderLine) -> Order:
    return Order.place("o-1", "alice", list(lines) or [line()], "EUR", T0)


def reserved() -> Order:
    o = order()
    o.mark_reserved(T1)
    return o


def test_a_new_order_is_pending_with_totals() -> None:
    o = order(line(1, 250, 2), line(2, 1999, 1))
    assert o.status is OrderStatus.PENDING
    assert o.total == 2 * 250 + 1999
    assert o.item_count == 3
    assert [ln.line_total for ln in o.lines] == [500, 1999]
    assert o.reservation_items() == [(1, 2), (2, 1)]
    assert o.created_at == o.updated_at == T0
    assert (o.loyalty_status, o.notification_status, o.release_status) == (None, None, None)
    assert o.source is Source.ITEMS and not o.confirming and not o.is_final


@pytest.mark.parametrize("lines, message", [
    ([], "at least one item"),
    ([line(1), line(1)], "more than once"),
    ([line(1, currency="USD")], "priced in USD"),
    ([line(i) for i in range(1, domain.MAX_LINES + 2)], "at most"),
])
def test_invalid_orders_are_refused(lines: list[OrderLine], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        Order.place("o-1", "alice", lines, "EUR", T0)


@pytest.mark.parametrize("quantity", [0, -1, domain.MAX_QUANTITY + 1, True, 1.5])
def test_line_quantities_are_checked(quantity: object) -> None:
    with pytest.raises(InvalidOrder):
        OrderLine(1, "S", "N", 100, "EUR", quantity)  # type: ignore[arg-type]


def test_negative_prices_and_bad_currencies_are_refused() -> None:
    with pytest.raises(InvalidOrder):
        line(price=-1)
    with pytest.raises(InvalidOrder):
        Order.place("o-1", "alice", [line()], "euro", T0)


def test_merge_quantities_sums_duplicates_in_first_seen_order() -> None:
    assert domain.merge_quantities([(2, 1), (1, 3), (2, 4)]) == [(2, 5), (1, 3)]
    with pytest.raises(InvalidOrder):
        domain.merge_quantities([])
    with pytest.raises(InvalidOrder, match="at most"):
        domain.merge_quantities([(1, domain.MAX_QUANTITY), (1, 1)])


def test_transition_table_is_complete_and_final_states_are_final() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    for status in (OrderStatus.REJECTED, OrderStatus.CONFIRMED, OrderStatus.CANCELLED):
        assert TRANSITIONS[status] == frozenset()


def test_reserve_then_confirm() -> None:
    o = reserved()
    assert o.status is OrderStatus.RESERVED and o.updated_at == T1
    with pytest.raises(InvalidTransition):
        o.confirm(T1)  # no payment yet
    o.start_confirmation("pay_1", T1)
    assert o.confirming and o.payment_id == "pay_1"
    o.start_confirmation("pay_1", T1)  # repeating is fine
    with pytest.raises(InvalidTransition, match="already being confirmed"):
        o.start_confirmation("pay_2", T1)
    o.confirm(T1)
    assert o.status is OrderStatus.CONFIRMED
    assert (o.loyalty_status, o.notification_status) == (FollowUp.PENDING, FollowUp.PENDING)
    assert not o.confirming
    with pytest.raises(InvalidTransition):
        o.mark_reserved(T1)


def test_abandoning_a_confirmation_forgets_the_payment() -> None:
    o = reserved()
    o.start_confirmation("pay_1", T1)
    o.abandon_confirmation(T1)
    assert o.payment_id is None and o.status is OrderStatus.RESERVED


def test_reject_records_why() -> None:
    o = order()
    shortages = [{"product_id": 1, "requested": 2, "available": 0}]
    o.reject(RejectionCode.INSUFFICIENT_STOCK, "short", T1, shortages)
    assert o.status is OrderStatus.REJECTED
    assert (o.reason, o.rejection_code, o.shortages) == (
        "short", RejectionCode.INSUFFICIENT_STOCK, shortages)
    with pytest.raises(InvalidTransition):
        o.mark_reserved(T1)
    with pytest.raises(InvalidTransition, match="rejected"):
        o.cancel(T1)


def test_only_pending_orders_can_be_rejected_or_reserved() -> None:
    o = reserved()
    with pytest.raises(InvalidTransition):
        o.reject(RejectionCode.INSUFFICIENT_STOCK, "short", T1)
    with pytest.raises(InvalidTransition):
        o.mark_reserved(T1)


@pytest.mark.parametrize("make", [order, reserved], ids=["pending", "reserved"])
def test_cancel_pending_or_reserved_then_again_is_a_no_op(make: object) -> None:
    o = make()  # type: ignore[operator]
    assert o.cancel(T1) is True
    assert o.status is OrderStatus.CANCELLED and o.release_status is FollowUp.PENDING
    assert o.cancel(T1) is False
    assert o.can_cancel() == (True, "already cancelled")


def test_cannot_cancel_confirmed_or_confirming() -> None:
    o = reserved()
    o.start_confirmation("pay_1", T1)
    allowed, why = o.can_cancel()
    assert not allowed and "being confirmed" in why
    with pytest.raises(InvalidTransition):
        o.cancel(T1)
    o.confirm(T1)
    with pytest.raises(InvalidTransition, match="confirmed order cannot be cancelled"):
        o.cancel(T1)


def test_record_follow_ups() -> None:
    o = reserved()
    o.record("release", FollowUp.DONE, T1)
    assert o.release_status is FollowUp.DONE
    with pytest.raises(ValueError):
        o.record("payment", FollowUp.DONE, T1)


def test_copy_is_independent() -> None:
    o = order()
    c = o.copy()
    c.lines.append(line(9))
    assert len(o.lines) == 1


def test_idempotency_keys_derive_from_the_order() -> None:
    assert domain.idempotency_key("abc", "reserve") == "order-abc-reserve"
