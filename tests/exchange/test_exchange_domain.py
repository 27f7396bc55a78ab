"""The exchange domain: rate tables, cross rates, exponents and half-even conversion (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.exchange import domain
from services.exchange.domain import InvalidRates, RateTable, UnknownCurrency

AS_OF = datetime(2026, 11, 24, tzinfo=UTC)


def table(**rates: Any) -> RateTable:
    return RateTable.build("EUR", rates or {"USD": "1.0850", "JPY": "162.50", "GBP": "0.8570",
                                            "KWD": "0.3340"}, AS_OF)


def test_direct_inverse_and_cross_rates() -> None:
    t = table()
    assert t.rate("EUR", "USD") == Decimal("1.0850000000")
    assert t.rate("USD", "EUR") == Decimal("0.9216589862")  # 1 / 1.085, half-even at 10 dp
    assert t.rate("USD", "JPY") == Decimal("149.7695852535")  # 162.5 / 1.085
    assert t.rate("GBP", "USD") == Decimal("1.2660443407")
    assert t.rate("JPY", "JPY") == Decimal(1)


def test_rates_from_lists_every_other_currency() -> None:
    rates = table().rates_from("USD")
    assert sorted(rates) == ["EUR", "GBP", "JPY", "KWD"]
    assert rates["EUR"] == Decimal("0.9216589862")


def test_unknown_currencies() -> None:
    t = table()
    for pair in (("EUR", "CHF"), ("XYZ", "EUR"), ("CHF", "CHF")):
        with pytest.raises(UnknownCurrency) as info:
            t.rate(*pair)
        assert info.value.code in pair
    with pytest.raises(UnknownCurrency):
        t.rates_from("CHF")


def test_rate_formatting_has_ten_places() -> None:
    assert domain.format_rate(Decimal(1)) == "1.0000000000"
    assert domain.format_rate(domain.round_rate(Decimal(1) / Decimal(3))) == "0.3333333333"
    assert domain.format_rate(Decimal("162.5")) == "162.5000000000"
    # half-even at the 10th place
    assert domain.round_rate(Decimal("0.00000000005")) == Decimal("0E-10")
    assert domain.round_rate(Decimal("0.00000000015")) == Decimal("2E-10")


@pytest.mark.parametrize(("amount", "source", "target", "rate", "expected"), [
    (1000, "EUR", "JPY", "162.5", 1625),      # 10.00 EUR → 1625 yen (exponent 2 → 0)
    (1, "EUR", "JPY", "162.5", 2),            # 1.625 yen → 2
    (1, "EUR", "JPY", "150", 2),              # 1.5 → 2 (tie: to even)
    (1, "EUR", "JPY", "250", 2),              # 2.5 → 2 (tie: to even, not up)
    (7, "EUR", "JPY", "50", 4),               # 3.5 → 4
    (1, "JPY", "EUR", "0.005", 0),            # 0.5 cent → 0 (tie: to even)
    (3, "JPY", "EUR", "0.005", 2),            # 1.5 cents → 2
    (1625, "JPY", "EUR", "0.0061538462", 1000),  # 1625 yen → 10.00 EUR
    (100, "EUR", "KWD", "0.334", 334),        # 1.00 EUR → 0.334 KWD = 334 fils (exp 3)
    (1000, "KWD", "JPY", "486.5269461078", 487),  # 1 KWD → 486.53 yen → 487
    (1001, "EUR", "USD", "1.085", 1086),      # 10.86085 → 1086
    (0, "EUR", "USD", "1.085", 0),
    (12345, "USD", "USD", "1", 12345),
])
def test_conversion(amount: int, source: str, target: str, rate: str, expected: int) -> None:
    assert domain.convert(amount, source, target, Decimal(rate)) == expected


def test_conversion_of_a_large_amount_is_exact() -> None:
    amount = 100_000_000_000_000  # the spec's maximum
    assert domain.convert(amount, "EUR", "JPY", Decimal("162.5")) == 162_500_000_000_000


def test_conversion_refuses_unknown_exponents_and_bad_amounts() -> None:
    with pytest.raises(UnknownCurrency):
        domain.convert(1, "EUR", "XYZ", Decimal(1))
    with pytest.raises(domain.ExchangeError):
        domain.convert(-1, "EUR", "USD", Decimal(1))


def test_exponents() -> None:
    assert (domain.exponent("EUR"), domain.exponent("JPY"), domain.exponent("KWD")) == (2, 0, 3)


@pytest.mark.parametrize(("base", "rates"), [
    ("XYZ", {"USD": 1}), ("eur", {"USD": 1}), ("EUR", {}), ("EUR", []),
    ("EUR", {"usd": "1.0"}), ("EUR", {"USD": "0"}), ("EUR", {"USD": -1}),
    ("EUR", {"USD": "NaN"}), ("EUR", {"USD": "Infinity"}), ("EUR", {"USD": "abc"}),
    ("EUR", {"USD": True}), ("EUR", {"USD": None}), ("EUR", {"USD": [1]}),
    ("EUR", {"EUR": "2"}), ("EUR", {"EUR": "1"}), ("EUR", {"USD": "1e13"}),
])
def test_invalid_tables(base: str, rates: Any) -> None:
    with pytest.raises(InvalidRates):
        RateTable.build(base, rates, AS_OF)


def test_unknown_exponent_currencies_are_skipped() -> None:
    ignored: list[str] = []
    t = RateTable.build("EUR", {"USD": 1.085, "XBT": "0.00002", "EUR": 1}, AS_OF,
                        ignored=ignored)
    assert t.currencies == ["EUR", "USD"] and ignored == ["XBT"]


def test_storage_strings_round_trip() -> None:
    t = table()
    assert t.as_strings()["USD"] == "1.0850"
    again = RateTable.build("EUR", t.as_strings(), AS_OF)
    assert again.rates == t.rates
