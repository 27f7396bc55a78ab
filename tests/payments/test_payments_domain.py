"""The payments domain: Luhn, payment methods, amounts and the state machine (pure)."""

from __future__ import annotations

import pytest

from services.payments import domain
from services.payments.domain import (
    InvalidAmount,
    InvalidPaymentMethod,
    InvalidTransition,
    Payment,
    PaymentMethod,
    PaymentStatus,
)


@pytest.mark.parametrize("number", [
    "4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119",
    "5555555555554444", "378282246310005", "6011111111111117", "79927398713",
])
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert domain.luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "4000000000000001", "1234567890123",
                                    "79927398710", "", "4242-4242"])
def test_luhn_refuses_invalid_numbers(number: str) -> None:
    assert not domain.luhn_valid(number)


@pytest.mark.parametrize(("number", "brand"), [
    ("4242424242424242", "visa"), ("5555555555554444", "mastercard"),
    ("2223003122003222", "mastercard"), ("378282246310005", "amex"),
    ("6011111111111117", "discover"), ("3056930009020004", "unknown"),
])
def test_card_brand(number: str, brand: str) -> None:
    assert domain.card_brand(number) == brand


def test_card_method_keeps_only_brand_and_last4_visible() -> None:
    method = PaymentMethod.parse("4242424242424242", None)
    assert (method.kind, method.brand, method.last4, method.token) == ("card", "visa",
                                                                       "4242", None)
    assert "4242424242424242" not in repr(method)


def test_token_method() -> None:
    method = PaymentMethod.parse(None, "tok_visa")
    assert (method.kind, method.brand, method.last4, method.token) == ("token", None, None,
                                                                       "tok_visa")


@pytest.mark.parametrize(("card", "token"), [
    (None, None), ("4242424242424242", "tok_visa"), ("4242424242424241", None),
    ("42424242", None), ("4242 4242 4242 4242", None), (None, "visa"), (None, "tok_"),
])
def test_bad_methods(card: str | None, token: str | None) -> None:
    with pytest.raises(InvalidPaymentMethod):
        PaymentMethod.parse(card, token)


@pytest.mark.parametrize("amount", [0, -1, 100_000_000_001, 1.5, True, "10"])
def test_bad_amounts(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        domain.check_amount(amount)  # type: ignore[arg-type]


def test_bad_currency() -> None:
    with pytest.raises(InvalidAmount):
        domain.check_currency("eur")


def payment(**changes: object) -> Payment:
    fields: dict[str, object] = {"id": "pay_1", "order_id": "o1", "customer_id": "c1",
                                 "amount": 1000, "currency": "EUR"}
    fields.update(changes)
    return Payment(**fields)  # type: ignore[arg-type]


def test_full_capture_then_partial_refunds_then_refunded() -> None:
    p = payment()
    assert p.refundable_amount == 0
    assert p.capture() == 1000
    assert (p.status, p.captured_amount, p.refundable_amount) == (PaymentStatus.CAPTURED,
                                                                  1000, 1000)
    assert p.refund(300) == 300
    assert (p.status, p.refunded_amount, p.refundable_amount) == (
        PaymentStatus.PARTIALLY_REFUNDED, 300, 700)
    assert p.refund(200) == 200
    assert p.refund() == 500  # the rest
    assert (p.status, p.refunded_amount, p.refundable_amount) == (PaymentStatus.REFUNDED,
                                                                  1000, 0)


def test_partial_capture_limits_refunds() -> None:
    p = payment()
    assert p.capture(600) == 600
    with pytest.raises(InvalidAmount):
        p.refund(601)
    assert p.refund(600) == 600
    assert p.status == PaymentStatus.REFUNDED


def test_capture_more_than_authorised_is_refused_and_changes_nothing() -> None:
    p = payment()
    with pytest.raises(InvalidAmount):
        p.capture(1001)
    assert (p.status, p.captured_amount) == (PaymentStatus.AUTHORIZED, 0)


def test_void_only_before_capture() -> None:
    p = payment()
    p.void()
    assert p.status == PaymentStatus.VOIDED
    captured = payment()
    captured.capture()
    with pytest.raises(InvalidTransition):
        captured.void()


@pytest.mark.parametrize(("status", "allowed"), [
    (PaymentStatus.AUTHORIZED, {"capture", "void"}),
    (PaymentStatus.DECLINED, set()),
    (PaymentStatus.VOIDED, set()),
    (PaymentStatus.CAPTURED, {"refund"}),
    (PaymentStatus.PARTIALLY_REFUNDED, {"refund"}),
    (PaymentStatus.REFUNDED, set()),
])
def test_transition_table(status: PaymentStatus, allowed: set[str]) -> None:
    captured = 0 if status in {PaymentStatus.AUTHORIZED, PaymentStatus.DECLINED,
                               PaymentStatus.VOIDED} else 1000
    refunded = {PaymentStatus.PARTIALLY_REFUNDED: 100, PaymentStatus.REFUNDED: 1000}.get(
        status, 0)
    for operation in ("capture", "void", "refund"):
        p = payment(status=status, captured_amount=captured, refunded_amount=refunded)
        if operation in allowed:
            getattr(p, operation)()
        else:
            with pytest.raises(InvalidTransition):
                getattr(p, operation)()
            assert p.status == status


def test_inconsistent_amounts_are_refused() -> None:
    with pytest.raises(InvalidAmount):
        payment(captured_amount=1001)
    with pytest.raises(InvalidAmount):
        payment(captured_amount=10, refunded_amount=11)
