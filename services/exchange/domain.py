"""Exchange domain: currencies, base-relative rate tables, cross rates and conversion.

Pure Python (``decimal`` only). A :class:`RateTable` holds, for one base currency, how
many units of each currency one unit of the base buys. The rate from ``a`` to ``b`` is
``rates[b] / rates[a]``, rounded half-even to :data:`RATE_PLACES` decimal places; that
rounded rate is what the API shows *and* what conversions use, so a client can reproduce
every converted amount::

    converted = round_half_even(amount × rate × 10^(exponent(to) − exponent(from)))

where ``amount`` and ``converted`` are integers in minor units and the exponents are the
ISO 4217 minor units (:data:`EXPONENTS`: EUR 2, JPY 0, KWD 3, …).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

RATE_PLACES = 10
_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
_CODE = re.compile(r"^[A-Z]{3}$")
MAX_RATE = Decimal("1e12")

# ISO 4217 minor units of the currencies this service can handle.
EXPONENTS: dict[str, int] = {
    "AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
    "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0,
    "KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2,
    "PLN": 2, "PYG": 0, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3,
    "TRY": 2, "TWD": 2, "UAH": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0,
    "ZAR": 2,
}


class ExchangeError(Exception):
    """A rule of the exchange domain was broken."""


class UnknownCurrency(ExchangeError):
    """The currency is not in the rate table (or not a currency this service handles)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"currency {code!r} is not known")


class InvalidRates(ExchangeError):
    """A rate table that cannot be used (bad base, bad code, non-positive rate, …)."""


def exponent(code: str) -> int:
    """The ISO 4217 minor-unit exponent of ``code``."""
    try:
        return EXPONENTS[code]
    except KeyError:
        raise UnknownCurrency(code) from None


def to_decimal(value: Any) -> Decimal:
    """A positive finite rate from a JSON number, a decimal string or a Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidRates(f"rate {value!r} is not a number")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise InvalidRates(f"rate {value!r} is not a number") from exc
    if not number.is_finite() or number <= 0 or number > MAX_RATE:
        raise InvalidRates(f"rate {value!r} must be a positive finite number")
    return number


def format_rate(rate: Decimal) -> str:
    """The API spelling: fixed point, exactly :data:`RATE_PLACES` decimals."""
    return f"{rate:.{RATE_PLACES}f}"


def round_rate(rate: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return rate.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class RateTable:
    """Units of each currency per one unit of ``base`` (the base itself is 1)."""

    base: str
    rates: Mapping[str, Decimal]
    as_of: datetime

    @classmethod
    def build(cls, base: str, rates: Mapping[str, Any], as_of: datetime,
              *, ignored: list[str] | None = None) -> RateTable:
        """Validate a source's rates; currencies without a known exponent are skipped.

        Skipped codes are appended to ``ignored`` (when given) so the caller can log them.
        """
        if not isinstance(base, str) or base not in EXPONENTS:
            raise InvalidRates(f"base {base!r} is not a known ISO 4217 currency")
        if not isinstance(rates, Mapping) or not rates:
            raise InvalidRates("rates must be a non-empty object")
        table: dict[str, Decimal] = {base: Decimal(1)}
        for code, value in rates.items():
            if not isinstance(code, str) or not _CODE.match(code):
                raise InvalidRates(f"{code!r} is not an ISO 4217 code")
            number = to_decimal(value)
            if code == base:
                if number != 1:
                    raise InvalidRates(f"the base {base} must have rate 1, not {value}")
                continue
            if code not in EXPONENTS:
                if ignored is not None:
                    ignored.append(code)
                continue
            table[code] = number
        if len(table) < 2:
            raise InvalidRates("no usable rate besides the base")
        return cls(base=base, rates=table, as_of=as_of)

    @property
    def currencies(self) -> list[str]:
        return sorted(self.rates)

    def _per_base(self, code: str) -> Decimal:
        try:
            return self.rates[code]
        except KeyError:
            raise UnknownCurrency(code) from None

    def rate(self, source: str, target: str) -> Decimal:
        """Units of ``target`` per unit of ``source``, rounded to RATE_PLACES (half-even)."""
        if source == target:
            self._per_base(source)
            return Decimal(1)
        with localcontext() as ctx:
            ctx.prec = 40
            cross = self._per_base(target) / self._per_base(source)
        return round_rate(cross)

    def rates_from(self, source: str) -> dict[str, Decimal]:
        """The rate from ``source`` to every other currency of the table."""
        self._per_base(source)
        return {code: self.rate(source, code) for code in self.currencies if code != source}

    def as_strings(self) -> dict[str, str]:
        """The base rates as exact decimal strings (for storage)."""
        return {code: str(value) for code, value in sorted(self.rates.items())}


def convert(amount: int, source: str, target: str, rate: Decimal) -> int:
    """``amount`` minor units of ``source`` in minor units of ``target`` (half-even)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ExchangeError("amount must be a non-negative integer of minor units")
    shift = exponent(target) - exponent(source)
    with localcontext() as ctx:
        ctx.prec = 80
        value = Decimal(amount) * rate * Decimal(1).scaleb(shift)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class KnownRates:
    """A rate table as last fetched from a source (the fallback when the source fails)."""

    source: str
    table: RateTable
    fetched_at: datetime


@dataclass(frozen=True)
class Freshness:
    """Which rates an answer used: when they were valid, from where, and how old they are.

    ``stale`` marks the last known rates served because the source failed; ``age`` is the
    whole seconds since they were fetched.
    """

    as_of: datetime
    source: str
    stale: bool
    age: int


@dataclass(frozen=True)
class Quote:
    """The rate from ``source`` to ``target``."""

    source: str
    target: str
    rate: Decimal
    freshness: Freshness


@dataclass(frozen=True)
class RateList:
    """Every rate from ``source`` (by target currency)."""

    source: str
    rates: Mapping[str, Decimal]
    freshness: Freshness


@dataclass(frozen=True)
class Conversion:
    """``amount`` minor units of ``source`` converted at ``rate`` (half-even rounding)."""

    source: str
    target: str
    amount: int
    converted_amount: int
    rate: Decimal
    freshness: Freshness
