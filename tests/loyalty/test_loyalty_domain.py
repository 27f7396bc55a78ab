"""The loyalty rules: the points rule, award requests and the never-negative balance."""

from __future__ import annotations

import pytest

from services.loyalty import domain
from services.loyalty.domain import Account, AwardRequest, InsufficientPoints, InvalidAmount


@pytest.mark.parametrize(
    ("amount", "currency", "per_unit", "expected"),
    [
        (12990, "EUR", 1, 129),   # 129.90 EUR → 129 whole units
        (99, "EUR", 1, 0),        # less than one unit earns nothing
        (100, "EUR", 1, 1),
        (12990, "EUR", 3, 387),
        (12990, "EUR", 0, 0),     # the programme can be switched off
        (1500, "JPY", 1, 1500),   # no minor unit
        (12345, "KWD", 1, 12),    # three decimals
        (0, "USD", 10, 0),
    ],
)
def test_points_per_whole_currency_unit(amount: int, currency: str, per_unit: int,
                                        expected: int) -> None:
    assert domain.points_for(amount, currency, per_unit) == expected


@pytest.mark.parametrize("currency", ["eur", "EURO", "", "E1R"])
def test_points_for_refuses_bad_currency(currency: str) -> None:
    with pytest.raises(InvalidAmount):
        domain.points_for(100, currency)


def test_points_for_refuses_negative_and_oversized() -> None:
    with pytest.raises(InvalidAmount):
        domain.points_for(-1, "EUR")
    with pytest.raises(InvalidAmount):
        domain.points_for(100, "EUR", -1)
    with pytest.raises(InvalidAmount):
        domain.points_for((domain.MAX_POINTS + 1) * 100, "EUR")


def test_award_request_needs_points_or_amount_not_both() -> None:
    AwardRequest("alice", "o1", points=5)
    AwardRequest("alice", "o1", amount=500, currency="EUR")
    for kwargs in ({}, {"points": 5, "amount": 500, "currency": "EUR"},
                   {"amount": 500}, {"points": 5, "currency": "EUR"}, {"points": 0},
                   {"amount": 500, "currency": "eur"}):
        with pytest.raises(InvalidAmount):
            AwardRequest("alice", "o1", **kwargs)  # type: ignore[arg-type]


def test_award_request_earned_and_matching() -> None:
    by_amount = AwardRequest("alice", "o1", amount=12990, currency="EUR")
    assert by_amount.earned(2) == 258
    assert by_amount.same_as("alice", 12990, "EUR", 129)
    assert by_amount.same_as("alice", 12990, "EUR", 999)  # rule changed since: same order
    assert not by_amount.same_as("alice", 12991, "EUR", 129)
    assert not by_amount.same_as("bob", 12990, "EUR", 129)
    explicit = AwardRequest("alice", "o1", points=50)
    assert explicit.earned(7) == 50
    assert explicit.same_as("alice", None, None, 50)
    assert not explicit.same_as("alice", None, None, 51)
    assert not explicit.same_as("alice", 5000, "EUR", 50)


def test_account_award_redeem_and_insufficient() -> None:
    account = Account("alice")
    assert account.award(100) == 100
    assert account.redeem(40) == 60
    with pytest.raises(InsufficientPoints) as info:
        account.redeem(61)
    assert (info.value.balance, info.value.requested) == (60, 61)
    assert account.balance == 60
    with pytest.raises(InvalidAmount):
        account.redeem(0)


def test_revoking_an_award_never_goes_negative() -> None:
    account = Account("alice", 30)
    assert account.revoke_award(100) == (30, 70)
    assert account.balance == 0
    account = Account("alice", 500)
    assert account.revoke_award(100) == (100, 0)
    assert account.balance == 400


def test_refund_and_negative_balance_refused() -> None:
    account = Account("alice", 0)
    assert account.refund_redemption(25) == 25
    with pytest.raises(domain.DomainError):
        Account("alice", -1)
